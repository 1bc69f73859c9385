//! Secrets on AWS: one Secrets Manager secret (a JSON object of strings),
//! named by `HOOKS_SECRETS_ARN`, read once when a function starts (its init
//! phase). Its values never pass through the function's environment: handler
//! secret references (`{ env = "NAME" }`) and ingest's tokens are looked up
//! in it (see [`crate::settings`]).

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;

use crate::aws::fault;
use crate::fault::Fault;

const SERVICE: &str = "Secrets Manager";

/// Why the secret's values could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {arn} has no text value: store a JSON object of strings")]
    NotText { arn: String },
    #[error("secret {arn}: {format}")]
    Format { arn: String, format: SecretFormat },
    #[error(transparent)]
    Service(#[from] Fault),
}

impl SecretsError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretsError::Service(f) if f.is_transient())
    }
}

/// What is wrong with a secret's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormat {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("must be a JSON object of strings, e.g. {{\"SOFTSWITCH_SECRET\": \"whsec_…\"}}")]
    NotObject,
    #[error("the value of `{0}` must be a string")]
    NotString(String),
}

/// The secret's values.
pub async fn load(
    sdk: &aws_config::SdkConfig,
    arn: &str,
) -> Result<HashMap<String, String>, SecretsError> {
    let out = Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| fault(e, SERVICE, SERVICE))?;
    let text = out.secret_string().ok_or_else(|| SecretsError::NotText {
        arn: arn.to_owned(),
    })?;
    parse(text).map_err(|format| SecretsError::Format {
        arn: arn.to_owned(),
        format,
    })
}

/// A JSON object of string values.
pub fn parse(text: &str) -> Result<HashMap<String, String>, SecretFormat> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| SecretFormat::NotJson(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(SecretFormat::NotObject);
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(SecretFormat::NotString(k)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_is_an_object_of_strings() {
        let m = super::parse(r#"{"A": "1", "HOOKS_INGEST_TOKENS": "t1,t2"}"#).unwrap();
        assert_eq!(m["HOOKS_INGEST_TOKENS"], "t1,t2");
        assert_eq!(
            super::parse(r#"{"A": 1}"#),
            Err(super::SecretFormat::NotString("A".into()))
        );
        assert_eq!(super::parse("[]"), Err(super::SecretFormat::NotObject));
        assert!(matches!(
            super::parse("{"),
            Err(super::SecretFormat::NotJson(_))
        ));
    }
}
