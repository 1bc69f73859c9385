//! Secrets on AWS: one Secrets Manager secret (a JSON object of strings),
//! named by `HOOKS_SECRETS_ARN`, read once when a function starts work. Its
//! values never pass through the function's environment; handler secret
//! references (`{ env = "NAME" }`) and ingest's tokens are looked up in it
//! first, then in the environment (local development).

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;

use crate::store::StoreError;
use crate::store::dynamodb::classify_sdk;

/// The variable that names the secret.
pub const SECRETS_ARN_ENV: &str = "HOOKS_SECRETS_ARN";

/// The secret's values; empty when `HOOKS_SECRETS_ARN` is not set.
pub async fn load(sdk: &aws_config::SdkConfig) -> Result<HashMap<String, String>, StoreError> {
    let Some(arn) = std::env::var(SECRETS_ARN_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(HashMap::new());
    };
    let out = Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| classify_sdk(e, "Secrets Manager", "Secrets Manager", |_| None))?;
    let text = out
        .secret_string()
        .ok_or_else(|| StoreError::Corrupt(format!("secret {arn} has no text value")))?;
    parse(text).map_err(|e| StoreError::Corrupt(format!("secret {arn}: {e}")))
}

/// A JSON object of string values.
pub fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(
            "must be a JSON object of strings, e.g. {\"SOFTSWITCH_SECRET\": \"whsec_…\"}".into(),
        );
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(format!("the value of `{k}` must be a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_is_an_object_of_strings() {
        let m = super::parse(r#"{"A": "1", "HOOKS_INGEST_TOKENS": "t1,t2"}"#).unwrap();
        assert_eq!(m["HOOKS_INGEST_TOKENS"], "t1,t2");
        assert!(super::parse(r#"{"A": 1}"#).is_err());
        assert!(super::parse("[]").is_err());
    }
}
