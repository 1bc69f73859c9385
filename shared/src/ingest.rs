//! What billing sends: authentication (bearer token or Standard Webhooks
//! signature) and the validation of events, before anything is queued.

use chrono::SubsecRound;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::events::Event;
use crate::protocol::EventEnvelope;
use crate::records::QueuedEvent;
use crate::signature::SigningKey;

/// How far a signed request's timestamp may be from now.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 5 * 60;

/// The most events one request may carry.
pub const MAX_BATCH: usize = 100;

pub use crate::protocol::{MAX_DATA_BYTES, MAX_DATA_DEPTH};

/// The credentials billing may use. Several of each may be valid at once, for rotation.
#[derive(Clone, Default)]
pub struct Authenticator {
    tokens: Vec<String>,
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why a request was not authenticated (the response says only "401").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send `Authorization: Bearer <token>` or Standard Webhooks signature headers"
    )]
    Missing,
    #[error("the bearer token is not valid")]
    BadToken,
    #[error("the signature is not valid")]
    BadSignature,
    #[error("the signature's timestamp is more than 5 minutes from now")]
    Stale,
}

impl Authenticator {
    /// `tokens` and `secrets` are comma-separated lists (`whsec_…` secrets).
    pub fn from_lists(tokens: &str, secrets: &str) -> Result<Self, String> {
        let tokens = tokens
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let keys = secrets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|s| SigningKey::parse(s).map_err(|e| format!("ingest secret: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Authenticator { tokens, keys })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.keys.is_empty()
    }

    /// Checks a request; `header` looks a header up by lower-case name.
    pub fn check<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        // Another scheme (the SigV4 `AWS4-HMAC-SHA256` of a function URL with
        // AWS_IAM auth) is not ours: such a request must carry a signature.
        let bearer = header("authorization").and_then(|auth| {
            auth.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| auth[7..].trim())
        });
        if let Some(token) = bearer {
            // Compare digests (equal length whatever the token) against
            // every token, in constant time each.
            use sha2::{Digest, Sha256};
            let given = Sha256::digest(token.as_bytes());
            let mut ok = subtle::Choice::from(0u8);
            for t in &self.tokens {
                ok |= Sha256::digest(t.as_bytes())
                    .as_slice()
                    .ct_eq(given.as_slice());
            }
            return if bool::from(ok) {
                Ok(())
            } else {
                Err(AuthError::BadToken)
            };
        }
        let (Some(id), Some(ts), Some(sig)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return Err(AuthError::Missing);
        };
        let ts: i64 = ts.trim().parse().map_err(|_| AuthError::BadSignature)?;
        if now.timestamp().abs_diff(ts) > SIGNATURE_TOLERANCE_SECS.unsigned_abs() {
            return Err(AuthError::Stale);
        }
        if self.keys.iter().any(|k| k.verify(id, ts, body, sig)) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// One problem with one event of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Position in a batch (0 for a single event).
    pub index: usize,
    pub field: String,
    pub message: String,
}

/// Why a body is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not an object or a non-empty array of objects.
    Malformed(String),
    /// Well-formed, but fields are wrong (unknown event, bad id…).
    Invalid(Vec<FieldError>),
}

/// Keys: what SQS accepts as a message group id.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=#".contains(&b))
}

/// Event ids: also safe in a URL path (`GET /events/{id}`) and an HTTP header.
pub fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@=".contains(&b))
        // `.` and `..` are path steps to an HTTP client: GET /events/.. could
        // not name the event.
        && s != "."
        && s != ".."
}

/// The id of the `n`th event of a signed request that names none: from its
/// `webhook-id`, so that the request sent again is the same event. A
/// `webhook-id` that is no valid id (too long, other characters) is hashed.
pub fn id_from_webhook_id(webhook_id: &str, n: usize) -> String {
    if valid_id(webhook_id) && webhook_id.len() <= 120 {
        format!("{webhook_id}-{n}")
    } else {
        use sha2::{Digest, Sha256};
        let hash = hex::encode(Sha256::digest(webhook_id.as_bytes()));
        format!("wh-{}-{n}", &hash[..40])
    }
}

/// The ordering key when billing gives none: the client when the data names
/// one (so that a client's accounts and subscriptions keep their order with
/// it), else the entity, else none (the event's own id).
pub fn default_key(event: Event, data: &Map<String, Value>, id: &str) -> String {
    let field = |name: &str| match data.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let group = event.group().as_str();
    let entity = group.trim_end_matches('s');
    let key = field("client_id")
        .map(|c| format!("client:{c}"))
        .or_else(|| field(&format!("{entity}_id")).map(|v| format!("{entity}:{v}")))
        .or_else(|| field("id").map(|v| format!("{entity}:{v}")))
        .unwrap_or_else(|| format!("event:{id}"));
    if valid_token(&key) {
        key
    } else {
        format!("event:{id}")
    }
}

/// Parses a body of one event or a batch into events ready for the queue.
/// Every problem of every event is reported; one bad event rejects the request.
pub fn parse_events(
    body: &[u8],
    now: DateTime<Utc>,
    new_id: impl Fn() -> String,
) -> Result<Vec<QueuedEvent>, BodyError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let items = match value {
        Value::Object(_) => vec![value],
        Value::Array(a) if a.is_empty() => {
            return Err(BodyError::Malformed("the batch is empty".into()));
        }
        Value::Array(a) if a.len() > MAX_BATCH => {
            return Err(BodyError::Malformed(format!(
                "a batch holds at most {MAX_BATCH} events, this one {}",
                a.len()
            )));
        }
        Value::Array(a) => a,
        _ => {
            return Err(BodyError::Malformed(
                "the body must be an event object or an array of them".into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        // Each event of a batch is received a microsecond after the one
        // before it, so that the batch's order is the order of their
        // `received_at` (what `hooks replay --since` sorts a key's events by).
        let at = now + chrono::Duration::microseconds(i64::try_from(index).unwrap_or(0));
        match parse_one(index, item, at, &new_id) {
            Ok(e) => {
                if !seen_ids.insert(e.event.id.clone()) {
                    errors.push(FieldError {
                        index,
                        field: "id".into(),
                        message: format!("id `{}` appears twice in this batch", e.event.id),
                    });
                }
                out.push(e);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(BodyError::Invalid(errors))
    }
}

fn parse_one(
    index: usize,
    item: Value,
    now: DateTime<Utc>,
    new_id: &impl Fn() -> String,
) -> Result<QueuedEvent, Vec<FieldError>> {
    let err = |field: &str, message: String| FieldError {
        index,
        field: field.to_owned(),
        message,
    };
    let Value::Object(mut obj) = item else {
        return Err(vec![err("", "an event must be a JSON object".into())]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["id", "event", "occurred_at", "key", "data"].contains(&key.as_str()) {
            errors.push(err(key, format!("unknown field `{key}`; an event has `id`, `event`, `occurred_at`, `key`, `data`")));
        }
    }
    let event = match obj.remove("event") {
        Some(Value::String(s)) => match s.parse::<Event>() {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(err("event", e.to_string()));
                None
            }
        },
        Some(_) => {
            errors.push(err(
                "event",
                "`event` must be a string such as \"clients.create\"".into(),
            ));
            None
        }
        None => {
            errors.push(err("event", "`event` is required".into()));
            None
        }
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => Some(new_id()),
        Some(Value::String(s)) if valid_id(&s) => Some(s),
        Some(_) => {
            errors.push(err(
                "id",
                "`id` must be 1 to 128 characters of letters, digits and -_.:@=".into(),
            ));
            None
        }
    };
    let occurred_at = match obj.remove("occurred_at") {
        None | Some(Value::Null) => Some(now),
        Some(Value::String(s)) => {
            match DateTime::parse_from_rfc3339(&s) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(e) => {
                    errors.push(err("occurred_at", format!("`occurred_at` must be an RFC 3339 time such as 2026-11-26T10:00:00Z: {e}")));
                    None
                }
            }
        }
        Some(_) => {
            errors.push(err(
                "occurred_at",
                "`occurred_at` must be an RFC 3339 time string".into(),
            ));
            None
        }
    };
    let key = match obj.remove("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_token(&s) => Some(s),
        Some(_) => {
            errors.push(err("key", "`key` must be 1 to 128 characters of letters, digits and -_.:@/+=#, e.g. \"client:42\"".into()));
            None
        }
    };
    let data = match obj.remove("data") {
        Some(Value::Object(d)) => {
            let size = crate::protocol::encoded_len(&d);
            let depth = crate::protocol::data_depth(&d);
            if size > MAX_DATA_BYTES {
                errors.push(err(
                    "data",
                    format!(
                        "`data` is {size} bytes; an event's data may be at most {MAX_DATA_BYTES}"
                    ),
                ));
                None
            } else if depth > MAX_DATA_DEPTH {
                errors.push(err(
                    "data",
                    format!(
                        "`data` nests {depth} levels; an event's data may nest at most {MAX_DATA_DEPTH}"
                    ),
                ));
                None
            } else {
                Some(d)
            }
        }
        None => {
            errors.push(err(
                "data",
                "`data` is required: the entity's fields as an object".into(),
            ));
            None
        }
        Some(_) => {
            errors.push(err("data", "`data` must be a JSON object".into()));
            None
        }
    };
    match (event, id, occurred_at, data) {
        (Some(event), Some(id), Some(occurred_at), Some(data)) if errors.is_empty() => {
            let key = key.unwrap_or_else(|| default_key(event, &data, &id));
            Ok(QueuedEvent {
                event: EventEnvelope {
                    id,
                    event,
                    // Kept to the millisecond, as the handler protocol
                    // writes it: what is accepted is what is stored and sent.
                    occurred_at: occurred_at.trunc_subsecs(3),
                    data,
                    trace: None,
                },
                key,
                received_at: now,
            })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn one_event_or_a_batch_with_defaults_filled_in() {
        let one = parse_events(
            br#"{"event":"clients.create","data":{"client_id":42}}"#,
            now(),
            || "gen-1".into(),
        )
        .unwrap();
        assert_eq!(one[0].event.id, "gen-1");
        assert_eq!(one[0].key, "client:42");
        assert_eq!(one[0].event.occurred_at, now());
        let batch = parse_events(
            br#"[{"id":"a","event":"accounts.create","data":{"account_id":"A-1"}},{"id":"b","event":"subscriptions.renew","key":"custom","data":{"client_id":"7","subscription_id":3}}]"#,
            now(),
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(
            (batch[0].key.as_str(), batch[1].key.as_str()),
            ("account:A-1", "custom")
        );
        assert!(
            batch[0].received_at < batch[1].received_at,
            "a batch's order is its events' received order"
        );
        let key = default_key(Event::ImportFailed, json!({}).as_object().unwrap(), "x1");
        assert_eq!(key, "event:x1");
    }

    #[test]
    fn every_problem_of_every_event_is_reported() {
        let err = parse_events(
            br#"[{"event":"clients.craete","data":{}},{"id":"a b","event":"clients.create","data":[],"extra":1},{"id":"x","event":"clients.create","data":{}},{"id":"x","event":"clients.create","data":{}}]"#,
            now(),
            || "g".into(),
        )
        .unwrap_err();
        let BodyError::Invalid(errors) = err else {
            panic!("{err:?}")
        };
        let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, "event"),
                (1, "extra"),
                (1, "id"),
                (1, "data"),
                (3, "id")
            ]
        );
        assert!(errors[0].message.contains("did you mean `clients.create`?"));
        assert!(matches!(
            parse_events(b"{", now(), || "g".into()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_events(b"[]", now(), || "g".into()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_events(b"42", now(), || "g".into()),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn tokens_and_signatures_with_rotation() {
        let auth =
            Authenticator::from_lists("old-token, new-token", &format!("whsec_c2Vjb25k,{SECRET}"))
                .unwrap();
        let body = br#"{"event":"clients.create","data":{}}"#;
        let bearer = |token: &'static str| move |n: &str| (n == "authorization").then_some(token);
        assert_eq!(auth.check(bearer("Bearer new-token"), body, now()), Ok(()));
        assert_eq!(auth.check(bearer("Bearer old-token"), body, now()), Ok(()));
        assert_eq!(
            auth.check(bearer("Bearer nope"), body, now()),
            Err(AuthError::BadToken)
        );
        assert_eq!(
            auth.check(bearer("bearer  old-token "), body, now()),
            Ok(())
        );
        // Another scheme is not a token: without a signature, nothing proves who sent it.
        assert_eq!(
            auth.check(bearer("Basic b2xkLXRva2Vu"), body, now()),
            Err(AuthError::Missing)
        );
        assert_eq!(auth.check(|_| None, body, now()), Err(AuthError::Missing));
        let key = SigningKey::parse(SECRET).unwrap();
        let ts = now().timestamp();
        let sig = key.sign("msg_1", ts, body);
        let ts_s = ts.to_string();
        let lookup = |n: &str| match n {
            "webhook-id" => Some("msg_1"),
            "webhook-timestamp" => Some(ts_s.as_str()),
            "webhook-signature" => Some(sig.as_str()),
            _ => None,
        };
        assert_eq!(auth.check(lookup, body, now()), Ok(()));
        // Behind a function URL with AWS_IAM auth, Authorization carries SigV4.
        let iam = |n: &str| match n {
            "authorization" => Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
            ),
            other => lookup(other),
        };
        assert_eq!(auth.check(iam, body, now()), Ok(()));
        assert_eq!(
            auth.check(lookup, b"tampered", now()),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            auth.check(lookup, body, now() + chrono::Duration::minutes(6)),
            Err(AuthError::Stale)
        );
    }

    #[test]
    fn an_event_id_must_be_readable_back_from_a_url_path() {
        // Valid as ordering keys, but not as ids: GET /events/{id} could not name them.
        for id in ["a/b", "a+b", "a#b"] {
            let body = format!(r#"{{"id":"{id}","event":"clients.create","data":{{}}}}"#);
            let err = parse_events(body.as_bytes(), now(), || "g".into()).unwrap_err();
            let BodyError::Invalid(errors) = err else {
                panic!("{id}: {err:?}")
            };
            assert_eq!(errors[0].field, "id", "{id}");
        }
        let ok = br#"{"id":"inv-2026:42@billing=1","event":"clients.create","data":{}}"#;
        assert!(parse_events(ok, now(), || "g".into()).is_ok());
        assert!(!valid_id(".") && !valid_id("..") && valid_id("..."));
    }

    #[test]
    fn a_signed_request_without_ids_gets_the_same_ids_when_sent_again() {
        assert_eq!(id_from_webhook_id("msg_1", 0), "msg_1-0");
        for odd in ["msg 1", &"m".repeat(300), "ünïcode", ""] {
            let id = id_from_webhook_id(odd, 1);
            assert!(valid_id(&id), "{id}");
            assert_eq!(id, id_from_webhook_id(odd, 1), "stable");
            assert_ne!(id, id_from_webhook_id(odd, 2));
        }
        assert_ne!(id_from_webhook_id("a b", 0), id_from_webhook_id("a c", 0));
    }
}
