//! The event types' JSON Schemas: `[schemas]` in `handlers.toml` names a
//! folder of `<event>.json` files (JSON Schema, draft 2020-12 unless a file
//! says `$schema`), reviewed in pull requests and synced with the handlers
//! as part of the revision. Ingest checks each event's `data` against its
//! type's schema; an event type without one is accepted as before unless
//! `strict = true`.
//!
//! Bounds, checked where a schema enters (`hooks validate`, `hooks sync`)
//! and again where ingest compiles a revision:
//! - a schema file is at most [`MAX_SCHEMA_BYTES`];
//! - a schema may not reach outside itself (no remote `$ref`: nothing is
//!   fetched), and its `$ref`s are JSON pointers into the same document
//!   that never lead back to where they are: no recursion. With its
//!   references followed, a schema is at most [`MAX_EXPANDED_NODES`]
//!   nodes and [`MAX_SCHEMA_DEPTH`] deep, so checking one value visits a
//!   bounded number of rules (a reference used twice counts twice: a chain
//!   of `anyOf`s that each use the next one twice is refused, not run in
//!   exponential time);
//! - its `pattern`s run on a linear-time regex engine, each compiled
//!   within [`PATTERN_SIZE_LIMIT`]; a revision has at most
//!   [`MAX_PATTERNS`] patterns of [`MAX_PATTERN_BYTES`] in all;
//! - formats the validator does not know are refused, not ignored;
//! - an event's answer names at most [`MAX_VIOLATIONS`] problems, each
//!   message without the event's values and at most
//!   [`MAX_MESSAGE_CHARS`] long.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::Event;

/// The largest schema file read.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most problems reported for one event.
pub const MAX_VIOLATIONS: usize = 10;
/// The compiled size limit of one `pattern` (the `regex` crate's), and of
/// its lazy DFA's cache.
pub const PATTERN_SIZE_LIMIT: usize = 64 * 1024;
/// The most nodes of one schema, its `$ref`s followed.
pub const MAX_EXPANDED_NODES: usize = 10_000;
/// The deepest a schema nests, its `$ref`s followed.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// The most `pattern`s and `patternProperties` keys of a revision.
pub const MAX_PATTERNS: usize = 256;
/// Their total length.
pub const MAX_PATTERN_BYTES: usize = 16 * 1024;
/// The longest message of one problem in an answer.
pub const MAX_MESSAGE_CHARS: usize = 200;

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

/// One schema, checked against the JSON Schema meta-schema and the bounds
/// above, and compiled.
pub fn compile(doc: &Value) -> Result<jsonschema::Validator, SchemaError> {
    if let Err(e) = jsonschema::meta::validate(doc) {
        return Err(SchemaError {
            message: format!(
                "is not a valid JSON Schema: {} (at {})",
                short(e.to_string()),
                pointer_or_root(&e.instance_path().to_string())
            ),
        });
    }
    shape(doc)?;
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(PATTERN_SIZE_LIMIT)
                .dfa_size_limit(PATTERN_SIZE_LIMIT),
        )
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(doc)
        .map_err(|e| SchemaError {
            message: format!("cannot be used: {}", short(e.to_string())),
        })
}

/// The keywords whose values are data, not schemas.
const DATA_KEYWORDS: [&str; 4] = ["const", "enum", "examples", "default"];
/// The keywords whose values map names to schemas.
const MAP_KEYWORDS: [&str; 6] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
];

/// What a node of a schema document is.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A schema: its keys are keywords.
    Schema,
    /// A map of names (property names, `$defs` names) to schemas.
    Map,
}

/// The nodes below `node` that may hold schemas, with their keys and kinds.
fn below(node: &Value, kind: Kind) -> Vec<(String, &Value, Kind)> {
    match (node, kind) {
        (Value::Object(o), Kind::Map) => o
            .iter()
            .map(|(k, v)| (k.clone(), v, Kind::Schema))
            .collect(),
        (Value::Object(o), Kind::Schema) => o
            .iter()
            .filter(|(k, v)| {
                !DATA_KEYWORDS.contains(&k.as_str()) && (v.is_object() || v.is_array())
            })
            .map(|(k, v)| {
                let kind = if MAP_KEYWORDS.contains(&k.as_str()) {
                    Kind::Map
                } else {
                    Kind::Schema
                };
                (k.clone(), v, kind)
            })
            .collect(),
        // `allOf`, `anyOf`, `oneOf`, `prefixItems`: arrays of schemas.
        (Value::Array(a), _) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v, Kind::Schema))
            .collect(),
        _ => Vec::new(),
    }
}

/// A schema's size and depth with its `$ref`s followed: refuses recursion,
/// references that are not JSON pointers into the document, embedded
/// resources (`$id` below the root, which would change what a pointer
/// means) and dynamic references.
fn shape(doc: &Value) -> Result<Measure, SchemaError> {
    let mut walk = Shape {
        root: doc,
        sizes: HashMap::new(),
        open: Vec::new(),
    };
    walk.size("", doc, Kind::Schema, 0)
}

/// A node's size with its references followed: how many nodes, how deep.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measure {
    nodes: usize,
    height: usize,
}

struct Shape<'a> {
    root: &'a Value,
    /// Each node's measure, references followed, once known.
    sizes: HashMap<String, Measure>,
    /// The pointers being measured: a reference to one of them is recursion.
    open: Vec<String>,
}

impl Shape<'_> {
    fn size(
        &mut self,
        at: &str,
        node: &Value,
        kind: Kind,
        depth: usize,
    ) -> Result<Measure, SchemaError> {
        let deep = || SchemaError {
            message: format!(
                "nests deeper than {MAX_SCHEMA_DEPTH} levels (its references followed)"
            ),
        };
        if depth > MAX_SCHEMA_DEPTH {
            return Err(deep());
        }
        if let Some(m) = self.sizes.get(at) {
            if depth + m.height > MAX_SCHEMA_DEPTH {
                return Err(deep());
            }
            return Ok(*m);
        }
        // Open while measured: a reference back to it is recursion.
        self.open.push(at.to_owned());
        let measured = self.measure(at, node, kind, depth);
        self.open.pop();
        let total = measured?;
        self.sizes.insert(at.to_owned(), total);
        Ok(total)
    }

    /// The node itself, what its `$ref` leads to and what is below it.
    fn measure(
        &mut self,
        at: &str,
        node: &Value,
        kind: Kind,
        depth: usize,
    ) -> Result<Measure, SchemaError> {
        let fail = |message: String| Err(SchemaError { message });
        let mut total = Measure {
            nodes: 1,
            height: 0,
        };
        if let (Value::Object(o), Kind::Schema) = (node, kind) {
            let shown = pointer_or_root(at).to_owned();
            for key in ["$dynamicRef", "$recursiveRef"] {
                if o.contains_key(key) {
                    return fail(format!("uses {key} at {shown}, which is not supported"));
                }
            }
            if !at.is_empty() && o.contains_key("$id") {
                return fail(format!(
                    "declares an embedded schema ($id) at {shown}, which is not supported: put its rules under `$defs` and refer to them with `#/$defs/…`"
                ));
            }
            if let Some(Value::String(r)) = o.get("$ref") {
                total.add(self.reference(&shown, r, depth)?);
            }
        }
        for (key, child, kind) in below(node, kind) {
            let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
            total.add(self.size(&here, child, kind, depth + 1)?);
            if total.nodes > MAX_EXPANDED_NODES {
                return fail(format!(
                    "has more than {MAX_EXPANDED_NODES} rules with its references followed (a reference used twice counts twice)"
                ));
            }
        }
        Ok(total)
    }

    fn reference(&mut self, shown: &str, r: &str, depth: usize) -> Result<Measure, SchemaError> {
        let fail = |message: String| Err(SchemaError { message });
        let Some(target) = r
            .strip_prefix('#')
            .filter(|t| t.is_empty() || t.starts_with('/'))
        else {
            return fail(format!(
                "refers to `{r}` at {shown}: only JSON pointers into the same schema (`#/$defs/…`) are followed"
            ));
        };
        if self
            .open
            .iter()
            .any(|o| o == target || o.starts_with(&format!("{target}/")))
        {
            return fail(format!(
                "refers back to where it is (`{r}` at {shown}): recursive schemas are not supported"
            ));
        }
        let Some(node) = self.root.pointer(target) else {
            return fail(format!(
                "refers to `{r}` at {shown}, which is not in the schema"
            ));
        };
        self.size(target, node, Kind::Schema, depth + 1)
    }
}

impl Measure {
    /// A child's measure into its parent's.
    fn add(&mut self, child: Measure) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.height = self.height.max(child.height + 1);
    }
}

/// The `pattern`s and `patternProperties` keys of `doc` (not following
/// references): how many, and their total length.
fn patterns(doc: &Value) -> (usize, usize) {
    let mut found = (0, 0);
    let mut stack = vec![(doc, Kind::Schema)];
    while let Some((v, kind)) = stack.pop() {
        if let (Value::Object(o), Kind::Schema) = (v, kind) {
            if let Some(Value::String(p)) = o.get("pattern") {
                found.0 += 1;
                found.1 += p.len();
            }
            if let Some(Value::Object(ps)) = o.get("patternProperties") {
                found.0 += ps.len();
                found.1 += ps.keys().map(String::len).sum::<usize>();
            }
        }
        stack.extend(below(v, kind).into_iter().map(|(_, c, k)| (c, k)));
    }
    found
}

/// The bounds of a revision's schemas taken together.
pub fn revision_bounds(by_event: &BTreeMap<Event, Value>) -> Result<(), SchemaError> {
    let (count, bytes) = by_event
        .values()
        .map(patterns)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if count > MAX_PATTERNS || bytes > MAX_PATTERN_BYTES {
        return Err(SchemaError {
            message: format!(
                "hold {count} patterns of {bytes} bytes in all; at most {MAX_PATTERNS} patterns of {MAX_PATTERN_BYTES} bytes are compiled for a revision"
            ),
        });
    }
    Ok(())
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
        revision_bounds(&schemas.by_event).map_err(|e| SchemaError {
            message: format!("the schemas {}", e.message),
        })?;
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
        // The yes-or-no check first: it stops at the first problem, where
        // listing them walks every branch.
        if v.is_valid(&instance) {
            return Vec::new();
        }
        v.iter_errors(&instance)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: data_path(&e.instance_path().to_string()),
                rule: pointer_or_root(&e.schema_path().to_string()).to_owned(),
                message: short(e.masked().to_string()),
            })
            .collect()
    }
}

/// At most [`MAX_MESSAGE_CHARS`] characters of `message`.
fn short(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
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
        // A pattern that backtracks exponentially elsewhere runs in linear
        // time here (were it not, this test would not end).
        let evil = format!("{}!", "a".repeat(5_000));
        let v = c.check(
            Event::ClientsCreate,
            &data(json!({"client_id": 1, "email": "a@b.example", "code": evil})),
        );
        assert_eq!(v.len(), 1, "{v:?}");
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

    /// `anyOf`s that each use the next one twice: 2^n rules when checked.
    fn chain(n: usize) -> Value {
        let mut defs = Map::new();
        for i in 0..n {
            let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
            defs.insert(format!("d{i}"), json!({"anyOf": [next.clone(), next]}));
        }
        defs.insert(format!("d{n}"), json!({"type": "integer"}));
        json!({"$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}})
    }

    #[test]
    fn schemas_whose_checks_could_run_away_are_refused_where_they_enter() {
        // Recursion, directly or through a name the walk must not skip.
        for recursive in [
            json!({"properties": {"children": {"items": {"$ref": "#"}}}}),
            json!({"$defs": {"t": {"properties": {"default": {"$ref": "#/$defs/t"}}}}, "$ref": "#/$defs/t"}),
            json!({"$defs": {"a": {"oneOf": [{"$ref": "#/$defs/b"}]}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}),
        ] {
            let e = compile(&recursive).unwrap_err();
            assert!(e.message.contains("recursive"), "{recursive}: {e}");
        }
        // A chain that doubles at each step: small as text, 2^20 rules checked.
        assert!(compile(&chain(5)).is_ok(), "64 rules are fine");
        let e = compile(&chain(20)).unwrap_err();
        assert!(e.message.contains("more than 10000 rules"), "{e}");
        // Deep through references.
        let mut defs = Map::new();
        for i in 0..100 {
            defs.insert(
                format!("d{i}"),
                json!({"items": {"$ref": format!("#/$defs/d{}", i + 1)}}),
            );
        }
        defs.insert("d100".into(), json!({"type": "integer"}));
        let e = compile(&json!({"$defs": defs, "$ref": "#/$defs/d0"})).unwrap_err();
        assert!(e.message.contains("nests deeper than"), "{e}");
        for (schema, said) in [
            (
                json!({"$defs": {"a": {"$anchor": "a"}}, "$ref": "#a"}),
                "only JSON pointers",
            ),
            (json!({"$ref": "other.json"}), "only JSON pointers"),
            (json!({"$ref": "#/$defs/missing"}), "not in the schema"),
            (
                json!({"properties": {"x": {"$id": "https://x.example/x", "type": "string"}}}),
                "embedded schema",
            ),
            (json!({"$dynamicRef": "#meta"}), "$dynamicRef"),
            (
                json!({"type": "string", "format": "date_time"}),
                "cannot be used",
            ),
        ] {
            let e = compile(&schema).unwrap_err();
            assert!(e.message.contains(said), "{schema}: {e}");
        }
        // A property named like a keyword is a property.
        let named = json!({"properties": {"$id": {"type": "string"}, "enum": {"type": "integer"}}});
        assert!(compile(&named).is_ok());
    }

    #[test]
    fn a_revision_compiles_a_bounded_number_of_patterns() {
        let many: Map<String, Value> = (0..MAX_PATTERNS + 1)
            .map(|i| {
                (
                    format!("f{i}"),
                    json!({"type": "string", "pattern": format!("^{i}$")}),
                )
            })
            .collect();
        let doc = json!({"properties": many});
        assert!(compile(&doc).is_ok(), "one schema alone compiles");
        let revision = Schemas {
            by_event: [(Event::ClientsCreate, doc)].into(),
            ..Schemas::default()
        };
        let e = Compiled::new(&revision).unwrap_err();
        assert!(e.message.contains("at most 256 patterns"), "{e}");
        // The same count through patternProperties and a property named `pattern`.
        let keys: Map<String, Value> = (0..MAX_PATTERNS + 1)
            .map(|i| (format!("^k{i}$"), json!({})))
            .collect();
        let doc = json!({"properties": {"pattern": {"patternProperties": keys}}});
        assert_eq!(patterns(&doc).0, MAX_PATTERNS + 1);
        let long = json!({"pattern": "a".repeat(MAX_PATTERN_BYTES + 1)});
        let by_event = [(Event::ClientsCreate, long)].into();
        assert!(revision_bounds(&by_event).is_err());
    }

    #[test]
    fn a_problem_is_said_without_the_events_values_and_short() {
        let schema = json!({
            "type": "object",
            "properties": {
                "card": {"type": "integer"},
                "who": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            },
        });
        let c = Compiled::new(&Schemas {
            by_event: [(Event::ClientsCreate, schema)].into(),
            ..Schemas::default()
        })
        .unwrap();
        let secret = "4111-1111-1111-1111";
        let big = "z".repeat(10_000);
        let v = c.check(
            Event::ClientsCreate,
            &data(json!({"card": secret, "who": {"name": big}})),
        );
        assert_eq!(v.len(), 2, "{v:?}");
        for problem in &v {
            assert!(!problem.message.contains(secret), "{problem:?}");
            assert!(!problem.message.contains("zzzz"), "{problem:?}");
            assert!(
                problem.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                "{problem:?}"
            );
        }
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
