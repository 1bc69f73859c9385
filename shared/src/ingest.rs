//! What billing sends: authentication (bearer token or Standard Webhooks
//! signature) and the validation of events, before anything is queued.

use chrono::SubsecRound;
use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::config::schemas::{Compiled, SchemaError};
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
    /// Says how it was authenticated: only a signed request's `webhook-id`
    /// is billing's (and may name its events); a bearer request's is any
    /// header.
    pub fn check<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Authenticated, AuthError> {
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
                Ok(Authenticated::Bearer)
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
            Ok(Authenticated::Signed)
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    Bearer,
    /// A Standard Webhooks signature over the body, its `webhook-id` and timestamp.
    Signed,
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

/// The ids ingest makes, as [`valid_id`] with `~`: what `GET /events/{id}`
/// can name.
pub fn valid_stored_id(s: &str) -> bool {
    s.contains('~') && s.len() <= 128 && valid_id(&s.replace('~', "-")) || valid_id(s)
}

/// The id of the `n`th event of a signed request that names none: from its
/// `webhook-id`, so that the request sent again is the same event. A
/// `webhook-id` that is no valid id (too long, other characters) is hashed.
/// The separator is `~`, which billing's own ids cannot hold: a made id
/// never equals one billing chose (`evt_1` + `-0` was `evt_1-0`).
pub fn id_from_webhook_id(webhook_id: &str, n: usize) -> String {
    if valid_id(webhook_id) && webhook_id.len() <= 120 {
        format!("{webhook_id}~{n}")
    } else {
        use sha2::{Digest, Sha256};
        let hash = hex::encode(Sha256::digest(webhook_id.as_bytes()));
        format!("wh~{}~{n}", &hash[..40])
    }
}

/// The ordering key when billing gives none: the client when the data names
/// one (so that a client's accounts and subscriptions keep their order with
/// it), else the entity, else none (the event's own id). A field that names
/// the client or entity but cannot be a key (too long, other characters)
/// is an error, naming the field: falling back to the event alone would
/// silently lose that client's order.
pub fn default_key(event: Event, data: &Map<String, Value>, id: &str) -> Result<String, String> {
    let field = |name: &str| match data.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let group = event.group().as_str();
    let entity = group.trim_end_matches('s');
    let entity_id = format!("{entity}_id");
    let found = [
        ("client_id", "client"),
        (entity_id.as_str(), entity),
        ("id", entity),
    ]
    .into_iter()
    .find_map(|(name, kind)| field(name).map(|v| (name, format!("{kind}:{v}"))));
    match found {
        None => Ok(format!("event:{id}")),
        Some((_, key)) if valid_token(&key) => Ok(key),
        // A generic `id` (an invoice number, say) is no ordering promise.
        Some(("id", _)) => Ok(format!("event:{id}")),
        Some((name, key)) => Err(format!(
            "`data.{name}` cannot order events: the key it makes, `{}`, is not 1 to 128 characters of letters, digits and -_.:@/+=#; send `key` (e.g. a hash of it) to keep this client's events in order",
            crate::protocol::cut(key, 60)
        )),
    }
}

/// The first number in `body` that would not reach handlers as billing
/// wrote it, with the index of the event (in a batch) it is in: an integer
/// beyond 64 bits, `-0`, a decimal that underflows to 0, or one with more
/// precision than a double keeps. The body is valid JSON already.
fn unkept_number(body: &[u8]) -> Option<(usize, String)> {
    let (mut i, mut depth, mut index, mut top_array) = (0usize, 0usize, 0usize, false);
    while i < body.len() {
        match body[i] {
            b'"' => {
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                if depth == 0 && body[i] == b'[' {
                    top_array = true;
                }
                depth += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if top_array && depth == 1 => index += 1,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < body.len()
                    && matches!(body[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&body[start..i]).unwrap_or("");
                if let Err(why) = number_is_kept(token) {
                    return Some((index, why));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A decimal number as sign, significant digits (no leading or trailing
/// zeros) and the power of ten of the last one; zero has no digits.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(p) => (&text[..p], text[p + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{int}{frac}");
    let mut exp = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let trimmed = digits.trim_end_matches('0').len();
    exp += i64::try_from(digits.len() - trimmed).ok()?;
    digits.truncate(trimmed);
    let digits = digits.trim_start_matches('0').to_owned();
    Some((neg, digits, exp))
}

/// Whether `token` (a JSON number) reaches handlers with the same value.
fn number_is_kept(token: &str) -> Result<(), String> {
    let integer = !token.contains(['.', 'e', 'E']);
    if integer {
        if token == "-0" {
            return Err("`-0` would reach handlers as -0.0: write 0".into());
        }
        if token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok() {
            return Ok(());
        }
        return Err(format!(
            "{} does not fit in 64 bits and would reach handlers rounded: send it as a string",
            crate::protocol::cut(token.to_owned(), 40)
        ));
    }
    let Ok(f) = token.parse::<f64>() else {
        return Err(format!(
            "{} is not a number",
            crate::protocol::cut(token.to_owned(), 40)
        ));
    };
    let Some((neg, digits, exp)) = decimal(token) else {
        return Err(format!(
            "{} is not a number",
            crate::protocol::cut(token.to_owned(), 40)
        ));
    };
    if digits.is_empty() {
        return Ok(()); // a zero, as a decimal (-0.0 is kept as -0.0)
    }
    if f == 0.0 || !f.is_finite() {
        return Err(format!(
            "{} is out of a double's range and would reach handlers as {}: send it as a string",
            crate::protocol::cut(token.to_owned(), 40),
            if f == 0.0 { "0" } else { "infinity" }
        ));
    }
    // The shortest text that reads back as the same double: what handlers get.
    let kept = decimal(&format!("{f:e}"));
    if kept.as_ref() != Some(&(neg, digits, exp)) {
        return Err(format!(
            "{} has more precision than a double keeps and would reach handlers as {f}: send it as a string",
            crate::protocol::cut(token.to_owned(), 40)
        ));
    }
    Ok(())
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
    if let Some((index, message)) = unkept_number(body) {
        return Err(BodyError::Invalid(vec![FieldError {
            index,
            field: "data".into(),
            message: format!("a number cannot be kept exactly: {message}"),
        }]));
    }
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

/// The fields an event may have.
const EVENT_FIELDS: &[&str] = &["id", "event", "occurred_at", "key", "data"];

/// One event of a body, `index` in its batch, received at `now`: each field
/// is read in a step of its own, and every problem of every field is
/// reported (an unknown field too).
fn parse_one(
    index: usize,
    item: Value,
    now: DateTime<Utc>,
    new_id: &impl Fn() -> String,
) -> Result<QueuedEvent, Vec<FieldError>> {
    let mut problems = Problems {
        index,
        errors: Vec::new(),
    };
    let Value::Object(mut obj) = item else {
        problems.push("", "an event must be a JSON object".into());
        return Err(problems.errors);
    };
    for key in obj.keys() {
        if !EVENT_FIELDS.contains(&key.as_str()) {
            problems.push(key, format!("unknown field `{key}`; an event has `id`, `event`, `occurred_at`, `key`, `data`"));
        }
    }
    let event = problems.check("event", event_field(obj.remove("event")));
    let id = problems.check("id", id_field(obj.remove("id"), new_id));
    let occurred_at = problems.check(
        "occurred_at",
        occurred_at_field(obj.remove("occurred_at"), now),
    );
    let key = problems
        .check("key", key_field(obj.remove("key")))
        .flatten();
    let data = problems.check("data", data_field(obj.remove("data")));
    match (event, id, occurred_at, data) {
        (Some(event), Some(id), Some(occurred_at), Some(data)) if problems.errors.is_empty() => {
            let key = match key {
                Some(k) => k,
                None => match default_key(event, &data, &id) {
                    Ok(k) => k,
                    Err(e) => {
                        problems.push("key", e);
                        return Err(problems.errors);
                    }
                },
            };
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
        _ => Err(problems.errors),
    }
}

/// The problems found in one event of a body, each with its field.
struct Problems {
    /// The event's position in its batch.
    index: usize,
    errors: Vec<FieldError>,
}

impl Problems {
    /// Records a problem with `field`.
    fn push(&mut self, field: &str, message: String) {
        self.errors.push(FieldError {
            index: self.index,
            field: field.to_owned(),
            message,
        });
    }

    /// A field's value as `read` found it, or `None` with its problem recorded.
    fn check<T>(&mut self, field: &str, read: Result<T, String>) -> Option<T> {
        read.map_err(|message| self.push(field, message)).ok()
    }
}

/// `event` (required): a name of the event catalogue.
fn event_field(v: Option<Value>) -> Result<Event, String> {
    match v {
        Some(Value::String(s)) => s.parse::<Event>().map_err(|e| e.to_string()),
        Some(_) => Err("`event` must be a string such as \"clients.create\"".into()),
        None => Err("`event` is required".into()),
    }
}

/// `id`: one that can be read back from a URL path; one is made with
/// `new_id` when the event has none.
fn id_field(v: Option<Value>, new_id: &impl Fn() -> String) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(new_id()),
        Some(Value::String(s)) if valid_id(&s) => Ok(s),
        Some(_) => Err("`id` must be 1 to 128 characters of letters, digits and -_.:@=".into()),
    }
}

/// `occurred_at`: an RFC 3339 time that can be stored as sent, between
/// 1970 and a day after `now`; `now` when the event has none.
fn occurred_at_field(v: Option<Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    match v {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(s)) => {
            match DateTime::parse_from_rfc3339(&s) {
                Ok(t) if t.nanosecond() >= 1_000_000_000 => {
                    Err("`occurred_at` is a leap second (:60), which cannot be stored as sent: write :59.999 or the next second".into())
                }
                Ok(t)
                    if t.timestamp() < 0
                        || t.with_timezone(&Utc) > now + chrono::Duration::days(1) =>
                {
                    Err(format!("`occurred_at` {s} is not between 1970 and a day from now"))
                }
                Ok(t) => Ok(t.with_timezone(&Utc)),
                Err(e) => Err(format!("`occurred_at` must be an RFC 3339 time such as 2026-11-26T10:00:00Z: {e}")),
            }
        }
        Some(_) => Err("`occurred_at` must be an RFC 3339 time string".into()),
    }
}

/// `key`: what orders the event among others (an SQS message group id);
/// `None` when the event has none, and the default applies.
fn key_field(v: Option<Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_token(&s) => Ok(Some(s)),
        Some(_) => Err("`key` must be 1 to 128 characters of letters, digits and -_.:@/+=#, e.g. \"client:42\"".into()),
    }
}

/// `data` (required): an object within the bounds of size and depth that
/// every handler can be sent.
fn data_field(v: Option<Value>) -> Result<Map<String, Value>, String> {
    match v {
        Some(Value::Object(d)) => {
            let size = crate::protocol::encoded_len(&d);
            let depth = crate::protocol::data_depth(&d);
            if size > MAX_DATA_BYTES {
                Err(format!(
                    "`data` is {size} bytes; an event's data may be at most {MAX_DATA_BYTES}"
                ))
            } else if depth > MAX_DATA_DEPTH {
                Err(format!(
                    "`data` nests {depth} levels; an event's data may nest at most {MAX_DATA_DEPTH}"
                ))
            } else {
                Ok(d)
            }
        }
        None => Err("`data` is required: the entity's fields as an object".into()),
        Some(_) => Err("`data` must be a JSON object".into()),
    }
}

/// The compiled schemas of the live revision, or why they cannot be: a
/// revision whose schemas do not compile (`hooks validate` checks the same
/// bounds before a sync, so only a CLI and a function of different versions
/// come here) is compiled once, not again for every request; a request of
/// the same revision reuses them.
#[derive(Debug, Default)]
pub struct SchemaCache(std::sync::Mutex<Option<(u64, CompiledOrNot)>>);

type CompiledOrNot = Result<std::sync::Arc<Compiled>, SchemaError>;

impl SchemaCache {
    /// The compiled schemas of `revision`; `None` when it has none.
    pub fn of(
        &self,
        revision: &crate::store::Revision,
    ) -> Result<Option<std::sync::Arc<Compiled>>, SchemaError> {
        if revision.config.schemas.is_empty() {
            return Ok(None);
        }
        let number = revision.info.revision;
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, c)) = cached.as_ref()
            && *n == number
        {
            return c.clone().map(Some);
        }
        let compiled = Compiled::new(&revision.config.schemas).map(std::sync::Arc::new);
        if let Err(e) = &compiled {
            tracing::error!(revision = number, error = %e, "the live revision's schemas do not compile");
        }
        *cached = Some((number, compiled.clone()));
        compiled.map(Some)
    }
}

/// Each event's data against its type's schema: every problem, as the
/// 422's field errors (`field` the path in the event, the message with the
/// schema's rule).
pub fn schema_problems(compiled: &Compiled, events: &[QueuedEvent]) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (index, e) in events.iter().enumerate() {
        for v in compiled.check(e.event.event, &e.event.data) {
            out.push(FieldError {
                index,
                field: v.path,
                message: format!("{} (schema rule {})", v.message, v.rule),
            });
        }
    }
    out
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
        assert_eq!(key.as_deref(), Ok("event:x1"));
        // A client id that cannot be a key is said, not dropped for the event's own.
        for bad in [
            json!({"client_id": "Müller"}),
            json!({"client_id": "x".repeat(130)}),
        ] {
            let e = default_key(Event::ClientsCreate, bad.as_object().unwrap(), "x1").unwrap_err();
            assert!(e.contains("`data.client_id` cannot order events"), "{e}");
        }
        let e = parse_events(
            br#"{"event":"clients.create","data":{"client_id":"M\u00fcller"}}"#,
            now(),
            || "x".into(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, BodyError::Invalid(v) if v[0].field == "key"),
            "{e:?}"
        );
        // With a key, the client id is only data.
        assert!(
            parse_events(
                br#"{"event":"clients.create","key":"client:m","data":{"client_id":"M\u00fcller"}}"#,
                now(),
                || "x".into(),
            )
            .is_ok()
        );
    }

    #[test]
    fn a_number_that_would_not_reach_handlers_as_sent_is_refused() {
        let one = |data: &str| {
            let body = format!(
                r#"[{{"event":"clients.create","data":{{"ok":1,"s":"], 1e-400 }}, ["}}}},{{"event":"clients.create","data":{data}}}]"#
            );
            let n = std::cell::Cell::new(0);
            let ids = || {
                n.set(n.get() + 1);
                format!("x{}", n.get())
            };
            parse_events(body.as_bytes(), now(), ids).map(|_| ())
        };
        for bad in [
            r#"{"n":123456789012345678901234567890}"#,
            r#"{"n":-0}"#,
            r#"{"n":1e-400}"#,
            r#"{"n":0.1000000000000000000001}"#,
            r#"{"n":[1, 2, {"m": 18446744073709551616}]}"#,
            r#"{"s":"12,3","n":9007199254740993.0}"#,
        ] {
            match one(bad) {
                Err(BodyError::Invalid(v)) => {
                    assert_eq!((v[0].index, v[0].field.as_str()), (1, "data"), "{bad}");
                    assert!(
                        v[0].message.starts_with("a number cannot be kept exactly"),
                        "{v:?}"
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for good in [
            r#"{"n":18446744073709551615,"m":-9223372036854775808}"#,
            r#"{"n":0.1,"m":1e300,"k":-0.0,"j":0,"i":2.5e-8,"h":100.0,"g":1E2}"#,
            r#"{"n":12.50,"s":"-0 1e-400 123456789012345678901234567890"}"#,
            r#"{"n":0.30000000000000004,"m":5e-324}"#,
        ] {
            assert_eq!(one(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn occurred_at_is_a_storable_time() {
        let at = |t: &str| {
            let body = format!(r#"{{"event":"clients.create","occurred_at":"{t}","data":{{}}}}"#);
            parse_events(body.as_bytes(), now(), || "x".into())
        };
        for bad in [
            "2026-11-26T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "1970-01-01T00:00:00+01:00",
        ] {
            assert!(
                matches!(at(bad), Err(BodyError::Invalid(v)) if v[0].field == "occurred_at"),
                "{bad}"
            );
        }
        assert!(at("2026-11-26T10:00:00.123+01:00").is_ok());
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
        let bearer_ok = Ok(Authenticated::Bearer);
        assert_eq!(
            auth.check(bearer("Bearer new-token"), body, now()),
            bearer_ok
        );
        assert_eq!(
            auth.check(bearer("Bearer old-token"), body, now()),
            bearer_ok
        );
        assert_eq!(
            auth.check(bearer("Bearer nope"), body, now()),
            Err(AuthError::BadToken)
        );
        assert_eq!(
            auth.check(bearer("bearer  old-token "), body, now()),
            bearer_ok
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
        assert_eq!(auth.check(lookup, body, now()), Ok(Authenticated::Signed));
        // Behind a function URL with AWS_IAM auth, Authorization carries SigV4.
        let iam = |n: &str| match n {
            "authorization" => Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
            ),
            other => lookup(other),
        };
        assert_eq!(auth.check(iam, body, now()), Ok(Authenticated::Signed));
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
        assert_eq!(id_from_webhook_id("msg_1", 0), "msg_1~0");
        // Never one of billing's own ids (they cannot hold `~`), and readable back.
        assert!(!valid_id(&id_from_webhook_id("evt_1", 0)));
        assert!(valid_stored_id(&id_from_webhook_id("evt_1", 0)));
        assert!(valid_stored_id(&id_from_webhook_id("a b", 3)));
        assert!(!valid_stored_id("a/b~0") && !valid_stored_id(&"x~".repeat(70)));
        for odd in ["msg 1", &"m".repeat(300), "ünïcode", ""] {
            let id = id_from_webhook_id(odd, 1);
            assert!(valid_stored_id(&id) && !valid_id(&id), "{id}");
            assert_eq!(id, id_from_webhook_id(odd, 1), "stable");
            assert_ne!(id, id_from_webhook_id(odd, 2));
        }
        assert_ne!(id_from_webhook_id("a b", 0), id_from_webhook_id("a c", 0));
    }
}
