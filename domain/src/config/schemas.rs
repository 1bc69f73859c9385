//! The event types' JSON Schemas: `[schemas]` in `handlers.toml` names a
//! folder of `<event>.json` files (JSON Schema, draft 2020-12 unless a file
//! says `$schema`), reviewed in pull requests and synced with the handlers
//! as part of the revision. Ingest checks each event's `data` against its
//! type's schema; an event type without one is accepted as before unless
//! `strict = true`.
//!
//! Bounds: a schema file is at most [`MAX_SCHEMA_BYTES`]; a schema may not
//! reach outside itself (no remote `$ref`: nothing is fetched); its
//! `pattern`s run on a linear-time regex engine, each compiled within
//! [`PATTERN_SIZE_LIMIT`]; an event's answer names at most
//! [`MAX_VIOLATIONS`] problems.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::Event;

/// The largest schema file read.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most problems reported for one event.
pub const MAX_VIOLATIONS: usize = 10;
/// The compiled size limit of one `pattern` (the `regex` crate's).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// `[schemas]`, with the schema documents read from its folder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schemas {
    /// The folder, relative to the bundle (as written).
    pub dir: String,
    /// Refuse the events of a type without a schema.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// The schemas, by event type.
    #[serde(default)]
    pub by_event: BTreeMap<Event, Value>,
}

impl Schemas {
    /// Whether there is nothing to check (no `[schemas]`).
    pub fn is_empty(&self) -> bool {
        self.dir.is_empty() && !self.strict && self.by_event.is_empty()
    }
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemaError {
    pub message: String,
}

/// One way an event's data does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where in the event, e.g. `data.accounts[0].id`.
    pub path: String,
    /// The rule, as a JSON pointer into the schema (`/properties/…/type`).
    pub rule: String,
    pub message: String,
}

/// One schema, checked against the JSON Schema meta-schema and compiled.
pub fn compile(doc: &Value) -> Result<jsonschema::Validator, SchemaError> {
    if let Err(e) = jsonschema::meta::validate(doc) {
        return Err(SchemaError {
            message: format!(
                "is not a valid JSON Schema: {e} (at {})",
                pointer_or_root(&e.instance_path().to_string())
            ),
        });
    }
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(PATTERN_SIZE_LIMIT))
        .should_validate_formats(true)
        .build(doc)
        .map_err(|e| SchemaError {
            message: format!("cannot be used: {e}"),
        })
}

fn pointer_or_root(p: &str) -> &str {
    if p.is_empty() { "the root" } else { p }
}

/// The schemas of a revision, compiled once.
pub struct Compiled {
    strict: bool,
    by_event: HashMap<Event, jsonschema::Validator>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("strict", &self.strict)
            .field("events", &self.by_event.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Compiled {
    pub fn new(schemas: &Schemas) -> Result<Compiled, SchemaError> {
        let mut by_event = HashMap::new();
        for (event, doc) in &schemas.by_event {
            let v = compile(doc).map_err(|e| SchemaError {
                message: format!("the schema of {event} {}", e.message),
            })?;
            by_event.insert(*event, v);
        }
        Ok(Compiled {
            strict: schemas.strict,
            by_event,
        })
    }

    /// Whether events of type `event` are checked.
    pub fn has(&self, event: Event) -> bool {
        self.by_event.contains_key(&event)
    }

    /// `data` against the schema of `event`: the problems (at most
    /// [`MAX_VIOLATIONS`]), none when it fits or the type has no schema
    /// (unless strict).
    pub fn check(&self, event: Event, data: &Map<String, Value>) -> Vec<Violation> {
        let Some(v) = self.by_event.get(&event) else {
            return if self.strict {
                vec![Violation {
                    path: "event".into(),
                    rule: "[schemas] strict".into(),
                    message: format!(
                        "{event} has no schema, and `[schemas] strict = true` accepts only types that have one"
                    ),
                }]
            } else {
                Vec::new()
            };
        };
        let instance = Value::Object(data.clone());
        v.iter_errors(&instance)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: data_path(&e.instance_path().to_string()),
                rule: pointer_or_root(&e.schema_path().to_string()).to_owned(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// A JSON pointer into the data as a path people read: `/accounts/0/id` →
/// `data.accounts[0].id`.
fn data_path(pointer: &str) -> String {
    let mut out = String::from("data");
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else if !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push('.');
            out.push_str(&part);
        } else {
            out.push_str(&format!("[{}]", serde_json::Value::String(part)));
        }
    }
    out
}

/// What `schema` says of a field a condition reads (`path` below `data`),
/// compared with values of the JSON types `compared`: `Err` with why the
/// condition cannot be right for this schema, `Ok` when it fits or the
/// schema does not say (a level with `patternProperties`, `additionalProperties`
/// as a schema, `$ref` or `allOf`/`anyOf`/`oneOf` is not followed).
pub fn check_field(
    schema: &Value,
    path: &[String],
    compared: Option<&[&str]>,
) -> Result<(), FieldMismatch> {
    let mut node = schema;
    for (i, seg) in path.iter().enumerate() {
        let Some(o) = node.as_object() else {
            return Ok(());
        };
        let opaque = ["patternProperties", "$ref", "allOf", "anyOf", "oneOf"]
            .iter()
            .any(|k| o.contains_key(*k))
            || o.get("additionalProperties").is_some_and(Value::is_object);
        let Some(props) = o.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        if opaque {
            return Ok(());
        }
        match props.get(seg) {
            Some(sub) => node = sub,
            None => {
                let known: Vec<&str> = props.keys().map(String::as_str).collect();
                return Err(FieldMismatch::Unknown {
                    field: format!("data.{}", path[..=i].join(".")),
                    known: known.join(", "),
                });
            }
        }
    }
    let Some(compared) = compared else {
        return Ok(());
    };
    let declared: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    if declared.iter().any(|t| compared.contains(t)) {
        return Ok(());
    }
    Err(FieldMismatch::Type {
        field: format!("data.{}", path.join(".")),
        declared: declared.join(" or "),
        compared: compared[0].to_owned(),
    })
}

/// A condition's field that its events' schema rules out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldMismatch {
    #[error("`{field}` is not in the schema (its fields: {known})")]
    Unknown { field: String, known: String },
    #[error("`{field}` is {declared} by the schema, but is compared with a {compared} here")]
    Type {
        field: String,
        declared: String,
        compared: String,
    },
}

/// An example of data that fits `schema`: `examples`, `default`, `const`
/// or the first `enum` value where the schema gives one, else a value of
/// its type with every property listed (at most 8 levels deep).
pub fn example(schema: &Value) -> Value {
    example_at(schema, 0)
}

fn example_at(schema: &Value, depth: usize) -> Value {
    let Some(s) = schema.as_object() else {
        return Value::Null;
    };
    if let Some(e) = s
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return e.clone();
    }
    for key in ["default", "const"] {
        if let Some(v) = s.get(key) {
            return v.clone();
        }
    }
    if let Some(v) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return v.clone();
    }
    if depth >= 8 {
        return Value::Null;
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().find_map(Value::as_str).unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ => "null",
    };
    match ty {
        "object" => Value::Object(
            s.get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), example_at(v, depth + 1)))
                .collect(),
        ),
        "array" => match s.get("items") {
            Some(items) => Value::Array(vec![example_at(items, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        "string" => Value::String(match s.get("format").and_then(Value::as_str) {
            Some("date-time") => "2026-01-01T00:00:00Z".into(),
            Some("date") => "2026-01-01".into(),
            Some("email") => "billing@example.com".into(),
            Some("uri") => "https://example.com/".into(),
            _ => "text".into(),
        }),
        "integer" => s.get("minimum").cloned().unwrap_or(Value::from(1)),
        "number" => s.get("minimum").cloned().unwrap_or(Value::from(1.5)),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas(strict: bool) -> Schemas {
        Schemas {
            dir: "schemas".into(),
            strict,
            by_event: [(
                Event::ClientsCreate,
                json!({
                    "type": "object",
                    "required": ["client_id", "email"],
                    "properties": {
                        "client_id": {"type": "integer", "minimum": 1},
                        "email": {"type": "string", "format": "email"},
                        "accounts": {"type": "array", "items": {
                            "type": "object",
                            "properties": {"id": {"type": "integer"}},
                        }},
                        "code": {"type": "string", "pattern": "^(a+)+$"},
                    },
                }),
            )]
            .into(),
        }
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn data_that_fits_passes_and_each_problem_names_its_path_and_rule() {
        let c = Compiled::new(&schemas(false)).unwrap();
        assert!(
            c.check(
                Event::ClientsCreate,
                &data(json!({"client_id": 7, "email": "a@b.example"}))
            )
            .is_empty()
        );
        let v = c.check(
            Event::ClientsCreate,
            &data(json!({"client_id": "7", "email": "not an email", "accounts": [{"id": 1}, {"id": "x"}]})),
        );
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"data.client_id"), "{v:?}");
        assert!(paths.contains(&"data.email"), "{v:?}");
        assert!(paths.contains(&"data.accounts[1].id"), "{v:?}");
        let id = v.iter().find(|v| v.path == "data.client_id").unwrap();
        assert_eq!(id.rule, "/properties/client_id/type");
        assert!(id.message.contains("integer"), "{id:?}");
        let missing = c.check(Event::ClientsCreate, &data(json!({})));
        assert!(missing.iter().any(|v| v.rule == "/required"), "{missing:?}");
    }

    #[test]
    fn a_type_without_a_schema_passes_unless_strict() {
        let anything = data(json!({"x": 1}));
        let lax = Compiled::new(&schemas(false)).unwrap();
        assert!(lax.check(Event::ClientsUpdate, &anything).is_empty());
        let strict = Compiled::new(&schemas(true)).unwrap();
        let v = strict.check(Event::ClientsUpdate, &anything);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("no schema"), "{v:?}");
    }

    #[test]
    fn hostile_data_and_schemas_are_bounded() {
        let c = Compiled::new(&schemas(false)).unwrap();
        // A pattern that backtracks exponentially elsewhere runs in linear time here.
        let started = std::time::Instant::now();
        let evil = format!("{}!", "a".repeat(5_000));
        let v = c.check(
            Event::ClientsCreate,
            &data(json!({"client_id": 1, "email": "a@b.example", "code": evil})),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Many problems: at most MAX_VIOLATIONS are listed.
        let accounts: Vec<Value> = (0..100).map(|_| json!({"id": "x"})).collect();
        let v = c.check(
            Event::ClientsCreate,
            &data(json!({"client_id": 1, "email": "a@b.example", "accounts": accounts})),
        );
        assert_eq!(v.len(), MAX_VIOLATIONS);
        // A schema that reaches outside itself is refused, not fetched.
        let remote = json!({"$ref": "https://example.com/schema.json"});
        assert!(compile(&remote).is_err());
        let not_a_schema = json!({"type": "no-such-type"});
        let e = compile(&not_a_schema).unwrap_err();
        assert!(e.message.contains("not a valid JSON Schema"), "{e}");
    }

    #[test]
    fn an_example_fits_its_schema() {
        let s = &schemas(false).by_event[&Event::ClientsCreate];
        let mut schema = s.clone();
        // Without the pattern, which no generated text meets.
        schema["properties"].as_object_mut().unwrap().remove("code");
        let e = example(&schema);
        let c = compile(&schema).unwrap();
        assert!(c.is_valid(&e), "{e}");
        assert_eq!(e["accounts"][0]["id"], json!(1));
        assert_eq!(data_path("/a~1b/0/x y"), "data[\"a/b\"][0][\"x y\"]");
    }
}
