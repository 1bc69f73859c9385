//! The handler protocol: the JSON a handler receives, and how its answer is read.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::config::{Handler, HandlerId, Phase};
use crate::events::Event;

pub use crate::data::Data;
pub use crate::text::cut;

/// The largest `data` of one event, encoded — as billing sends it and as a
/// handler may return it: the event's record holds it twice (as sent, and as
/// the handlers left it) within DynamoDB's 400 KB item.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// The deepest `data` may nest (the `data` object itself is level 1): what
/// ingest accepts and what a handler may return. Every later step wraps
/// `data` a few levels deeper (the queue message, the handler request, the
/// event's record) and must still read it back: serde_json stops at 128
/// levels. Billing's entities are a few levels deep.
pub const MAX_DATA_DEPTH: usize = 32;

/// How deep a JSON value nests (a scalar is 0, `{}` or `[]` 1), counted
/// without recursion, so any value a parser produced can be measured.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|i| (i, level + 1)));
            }
            Value::Object(fields) => {
                deepest = deepest.max(level);
                stack.extend(fields.values().map(|i| (i, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The depth of an entity's fields (the object itself counts as 1).
pub fn data_depth(data: &Data) -> usize {
    1 + data.values().map(depth).max().unwrap_or(0)
}

/// A forbid reason is kept to this many bytes (the rest is cut, marked `…`):
/// it is stored in the event's record and in the execution log.
pub const MAX_REASON_BYTES: usize = 1024;

/// The size of `data` encoded as JSON, counted without building the text.
pub fn encoded_len(data: &Data) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing JSON values into a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, data);
    n.0
}

/// One occurrence of an event, as it moves through the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Billing's idempotency key, or one generated at ingest.
    pub id: String,
    pub event: Event,
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub data: Data,
    /// The trace the event belongs to (W3C `traceparent`): billing's, when
    /// it sent one, else one started at ingest. Each handler call sends a
    /// child of it. Not part of the handler's request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::trace::TraceParent>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Debug, Serialize)]
struct HandlerRef<'a> {
    id: HandlerId,
    name: &'a str,
}

/// The request body a handler receives (HTTP POST body, or a script's stdin).
#[derive(Debug, Serialize)]
struct HandlerRequest<'a> {
    id: &'a str,
    event: Event,
    #[serde(serialize_with = "rfc3339")]
    occurred_at: &'a DateTime<Utc>,
    attempt: u32,
    handler: HandlerRef<'a>,
    phase: Phase,
    data: &'a Data,
}

/// Serializes the request for `handler`, with `data` as left by the handlers before it.
pub fn request_body(
    event: &EventEnvelope,
    handler: &Handler,
    attempt: u32,
    data: &Data,
) -> Vec<u8> {
    let req = HandlerRequest {
        id: &event.id,
        event: event.event,
        occurred_at: &event.occurred_at,
        attempt,
        handler: HandlerRef {
            id: handler.id,
            name: &handler.name,
        },
        phase: handler.phase,
        data,
    };
    // Serializing maps with string keys and JSON values into memory cannot fail.
    serde_json::to_vec(&req).unwrap_or_default()
}

/// The `webhook-id` of a handler call: the same on every retry, unique per
/// event and handler.
pub fn webhook_id(event_id: &str, handler: HandlerId) -> String {
    format!("{event_id}_h{handler}")
}

/// What a successful (2xx / exit 0) answer says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// New data for the handlers after this one, when the answer carries it.
    pub data: Option<Data>,
    /// `Some(reason)` when the handler forbids the action.
    pub forbid: Option<String>,
}

/// A successful answer that cannot be used: its known fields are unusable,
/// or it is (or says it is) JSON and does not parse. Either way the chain
/// treats it as the handler's failure, never as "no change": a `forbid` the
/// reader could not see must not become an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("`decision` must be \"allow\" or \"forbid\", got {0}")]
    Decision(String),
    #[error("`data` must be a JSON object, got {0}")]
    Data(&'static str),
    #[error("`data` is {0} bytes; an event's data may be at most {MAX_DATA_BYTES}")]
    DataTooLarge(usize),
    #[error("`data` nests {0} levels; an event's data may nest at most {MAX_DATA_DEPTH}")]
    DataTooDeep(usize),
    /// Strict JSON (RFC 8259, numbers within a double's range, no lone
    /// surrogates, nothing after the value, at most 128 levels deep) or
    /// nothing: `NaN`, `1e400`, trailing data…
    #[error("the answer {how} JSON but does not parse: {error}")]
    NotJson { how: &'static str, error: String },
    #[error("the answer has `{0}` more than once")]
    Duplicate(String),
}

/// The fields of an answer that mean something, read a second time from the
/// bytes so that a repeated one is seen (a map keeps only the last).
#[derive(Deserialize)]
#[allow(dead_code)] // only whether each is repeated matters
struct KnownFields {
    #[serde(default)]
    data: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    decision: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    reason: Option<serde::de::IgnoredAny>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a body that does not parse was meant as a JSON object: its
/// first character opens one. (A body meant as an array could not carry a
/// decision or data anyway: `[INFO] done` on a script's stdout stays
/// "processed".)
fn looks_like_json(body: &[u8]) -> bool {
    matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{'))
}

/// The UTF-8 byte order mark that Windows tools (PowerShell, .NET) put
/// before what they write.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a successful answer. An empty body, or a body that is neither
/// declared as JSON (`declared_json`: the HTTP answer's `Content-Type`) nor
/// looks like it (`OK`, `done`), or JSON that is not an object, means
/// "processed, no change"; unknown fields are ignored, so a handler that
/// echoes the request back changes nothing. A body that is declared or
/// looks like JSON and does not parse strictly is an error, and so is a
/// known field given twice.
pub fn read_answer(body: &[u8], declared_json: bool) -> Result<Answer, AnswerError> {
    // A byte order mark is not part of the JSON: read what follows it (a
    // forbid behind one must not pass for plain text).
    let body = body.strip_prefix(BOM).unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer::default());
    }
    let mut obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return Ok(Answer::default()),
        Err(e) if declared_json || looks_like_json(body) => {
            return Err(AnswerError::NotJson {
                how: if declared_json {
                    "is declared as"
                } else {
                    "looks like"
                },
                error: e.to_string(),
            });
        }
        Err(_) => return Ok(Answer::default()),
    };
    if let Err(e) = serde_json::from_slice::<KnownFields>(body) {
        let text = e.to_string();
        let field = ["data", "decision", "reason"]
            .into_iter()
            .find(|f| text.contains(&format!("duplicate field `{f}`")));
        return Err(match field {
            Some(f) => AnswerError::Duplicate(f.to_owned()),
            None => AnswerError::NotJson {
                how: "is",
                error: text,
            },
        });
    }
    let data = match obj.remove("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => match (encoded_len(&d), data_depth(&d)) {
            (n, _) if n > MAX_DATA_BYTES => return Err(AnswerError::DataTooLarge(n)),
            (_, n) if n > MAX_DATA_DEPTH => return Err(AnswerError::DataTooDeep(n)),
            _ => Some(d),
        },
        Some(other) => return Err(AnswerError::Data(json_type(&other))),
    };
    let forbid = match obj.remove("decision") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "allow" => None,
        Some(Value::String(s)) if s == "forbid" => Some(match obj.remove("reason") {
            Some(Value::String(r)) if !r.trim().is_empty() => cut(r, MAX_REASON_BYTES),
            // A forbid stands whatever its reason looks like.
            _ => "forbidden by handler (no reason given)".to_owned(),
        }),
        Some(other) => return Err(AnswerError::Decision(other.to_string())),
    };
    Ok(Answer { data, forbid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_and_non_json_bodies_change_nothing() {
        assert_eq!(read_answer(b"", false), Ok(Answer::default()));
        assert_eq!(read_answer(b"OK", false), Ok(Answer::default()));
        assert_eq!(read_answer(b"[1,2]", false), Ok(Answer::default()));
    }

    #[test]
    fn data_and_forbid_are_read_and_unknown_fields_ignored() {
        let a = read_answer(
            br#"{"data":{"a":1},"decision":"forbid","reason":"no","x":true}"#,
            false,
        )
        .unwrap();
        assert_eq!(a.data, json!({"a":1}).as_object().cloned());
        assert_eq!(a.forbid.as_deref(), Some("no"));
        let a = read_answer(br#"{"decision":"allow","event":"clients.create"}"#, false).unwrap();
        assert_eq!(a, Answer::default());
    }

    #[test]
    fn unusable_known_fields_are_errors() {
        assert_eq!(
            read_answer(br#"{"decision":"maybe"}"#, false),
            Err(AnswerError::Decision("\"maybe\"".into()))
        );
        assert_eq!(
            read_answer(br#"{"data":[1]}"#, false),
            Err(AnswerError::Data("an array"))
        );
    }

    #[test]
    fn a_body_that_is_or_looks_like_json_must_parse_strictly() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(130), "]".repeat(130));
        for body in [
            r#"{"decision":"forbid","score":NaN}"#,
            r#"{"decision":"forbid","score":Infinity}"#,
            r#"{"decision":"forbid","score":1e400}"#,
            r#"{"decision":"forbid","reason":"\ud800"}"#,
            r#"{"decision":"forbid"} {"decision":"allow"}"#,
            r#"{"decision":"forbid",}"#,
            "  {\"decision\": \"forbid\"",
            deep.as_str(),
        ] {
            match read_answer(body.as_bytes(), false) {
                Err(AnswerError::NotJson {
                    how: "looks like", ..
                }) => {}
                other => panic!("{body}: {other:?}"),
            }
        }
        // Declared JSON: any body that does not parse, whatever it starts with.
        assert!(matches!(
            read_answer(b"OK", true),
            Err(AnswerError::NotJson {
                how: "is declared as",
                ..
            })
        ));
        assert!(matches!(
            read_answer(b"NaN", true),
            Err(AnswerError::NotJson { .. })
        ));
        // Not JSON and not declared: processed, no change (as is an empty body
        // however it is declared).
        assert_eq!(read_answer(b"OK\n", false), Ok(Answer::default()));
        assert_eq!(read_answer(b"[INFO] done", false), Ok(Answer::default()));
        // Behind a byte order mark, a forbid is still read, and a broken one
        // still fails.
        let bom = |s: &str| [BOM, s.as_bytes()].concat();
        assert_eq!(
            read_answer(&bom(r#"{"decision":"forbid","reason":"r"}"#), false).map(|a| a.forbid),
            Ok(Some("r".to_owned()))
        );
        assert!(read_answer(&bom(r#"{"decision":"forbid","x":NaN}"#), false).is_err());
        assert_eq!(read_answer(b"done {", false), Ok(Answer::default()));
        assert_eq!(read_answer(b" \n", true), Ok(Answer::default()));
        assert_eq!(read_answer(b"null", true), Ok(Answer::default()));
    }

    #[test]
    fn a_known_field_given_twice_is_unusable_and_a_forbid_keeps_a_bad_reason() {
        for (body, field) in [
            (r#"{"decision":"forbid","decision":"allow"}"#, "decision"),
            (r#"{"data":{"a":1},"x":1,"data":{"a":2}}"#, "data"),
            (
                r#"{"decision":"forbid","reason":"a","reason":"b"}"#,
                "reason",
            ),
        ] {
            assert_eq!(
                read_answer(body.as_bytes(), true),
                Err(AnswerError::Duplicate(field.into())),
                "{body}"
            );
        }
        // An unknown field may repeat: it is ignored.
        assert_eq!(
            read_answer(br#"{"x":1,"x":2}"#, true),
            Ok(Answer::default())
        );
        let a = read_answer(br#"{"decision":"forbid","reason":42}"#, true).unwrap();
        assert_eq!(
            a.forbid.as_deref(),
            Some("forbidden by handler (no reason given)")
        );
    }

    #[test]
    fn data_too_large_for_the_event_record_is_refused() {
        // Numbers are re-encoded (1e15 → 1000000000000000.0): the limit
        // applies to what would be stored, not to the bytes received.
        let n = MAX_DATA_BYTES / 18 + 1;
        let body = format!(r#"{{"data":{{"n":[{}]}}}}"#, vec!["1e15"; n].join(","));
        assert!(body.len() < MAX_DATA_BYTES);
        match read_answer(body.as_bytes(), false) {
            Err(AnswerError::DataTooLarge(size)) => assert!(size > MAX_DATA_BYTES),
            other => panic!("expected DataTooLarge, got {other:?}"),
        }
        let fits = format!(
            r#"{{"data":{{"s":"{}"}}}}"#,
            "x".repeat(MAX_DATA_BYTES - 10)
        );
        assert!(read_answer(fits.as_bytes(), false).unwrap().data.is_some());
    }

    #[test]
    fn a_long_forbid_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let body = json!({"decision": "forbid", "reason": reason}).to_string();
        let kept = read_answer(body.as_bytes(), false).unwrap().forbid.unwrap();
        assert!(kept.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(kept.ends_with('…'));
        assert!(kept.starts_with("éé"));
    }
}
