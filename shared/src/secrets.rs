//! Secrets on AWS: one Secrets Manager secret (a JSON object of strings),
//! named by `HOOKS_SECRETS_ARN`, read once when a function starts (its init
//! phase). Its values never pass through the function's environment: handler
//! secret references (`{ env = "NAME" }`) and ingest's tokens are looked up
//! in it (see [`crate::settings`]).

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;

use crate::store::StoreError;
use crate::store::dynamodb::classify_sdk;

/// The secret's values.
pub async fn load(
    sdk: &aws_config::SdkConfig,
    arn: &str,
) -> Result<HashMap<String, String>, StoreError> {
    let out = Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
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
