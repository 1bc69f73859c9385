//! `when = "…"`: a handler's condition on the event's data, in the Common
//! Expression Language (CEL), evaluated by the `cel` crate.
//!
//! Why CEL: it cannot loop, call out or change anything, and engineers
//! know it from Kubernetes, Envoy and Google Cloud IAM. Its alternatives
//! were weighed: `evalexpr` has no `in` over lists and no macros and its
//! types are looser (an int and a string compare without error); `rhai` and
//! Lua are whole scripting languages (loops, functions, state) for what is a
//! predicate; JSONLogic is a JSON tree nobody reviews comfortably in a pull
//! request; jq (`jaq`) is for transforming, not deciding.
//!
//! An expression sees two variables: `data` (the event's data as the
//! handlers before this one left it) and `event` (its name, e.g.
//! `"clients.create"`). It must come to `true` or `false`. One that cannot
//! be evaluated for an event (a field missing, a value of another type)
//! counts as false for that event: the handler is not called, and the call's
//! record says why. `has(data.x)` says it explicitly.
//!
//! To keep each evaluation one pass over the data at most, a macro (`all`,
//! `exists`, `exists_one`, `map`, `filter`) may not contain another, and
//! reads only its own variable, not `data`: `hooks validate` refuses the rest.
//!
//! `hooks validate` checks what is knowable without the data: the syntax,
//! that only `data`, `event` and a macro's own variables are named, that
//! every function exists, that the result can be a boolean, and that a
//! field is not compared with values of different types (`data.balance < 0
//! || data.balance == "none"`) or a literal with an incompatible one.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use cel::common::ast::{Expr, LiteralValue, operators};
use cel::common::types::{CelBool, CelString};
use cel::{Context, IdedExpr, Program, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::Data;
use crate::events::Event;

/// The longest condition accepted: it is evaluated for every event the
/// handler listens to.
pub const MAX_CONDITION_BYTES: usize = 1024;

/// The deepest brackets may nest in a condition (`((…))`, `[[…]]`):
/// checked on the text before it is parsed, since the parser recurses per
/// level (a debug build overflowed its stack at 20–55 levels).
pub const MAX_BRACKET_DEPTH: usize = 32;

/// The deepest the parsed expression may nest (an operator chain such as
/// `a + a + … + a` nests once per operator; a macro adds a few levels):
/// every later pass over it — the checks, the evaluation — recurses, on the
/// functions' worker threads (2 MiB). A debug build's evaluation overflowed
/// one at about 60 levels; 32 leaves room (`the_deepest_accepted_condition_
/// fits_a_workers_stack` checks it).
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// The most steps one evaluation may take, estimated from the expression
/// and the data before it runs: every node of the expression once, and a
/// macro's body once per element of the longest list it can meet (at most
/// the data's longest list, or a list written in the condition). An
/// evaluation over the budget does not run: the handler fails (see
/// [`EvalError::OverBudget`]). A quarter of a million steps is about a
/// tenth of a second.
pub const MAX_EVAL_STEPS: u64 = 250_000;

/// Distinct `matches` patterns a process keeps compiled (a config's
/// patterns are literals, checked by `hooks validate`); past it the cache
/// starts over.
const MAX_PATTERNS: usize = 256;

/// The compiled size of one `matches` pattern, at most (`regex`'s own
/// limits: a pattern that would need more fails to compile).
const PATTERN_SIZE_LIMIT: usize = 4 << 20;

/// The variables a condition may name.
pub const VARIABLES: &[&str] = &["data", "event"];

/// The functions and macros of CEL's standard library (cel 0.15, features
/// `json` and `regex`): anything else is reported by `hooks validate`.
pub const FUNCTIONS: &[&str] = &[
    "size",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
];

/// A compiled condition. Compared, printed and stored as its source.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// The top-level fields of `data` the expression reads, or `None` when
    /// it uses `data` as a whole: only those are converted for CEL at each
    /// evaluation (a 64 KB data is not copied to read one number).
    reads: Option<Arc<[String]>>,
    /// What an evaluation costs per node and per list element.
    cost: Cost,
}

/// CEL's standard library, built once: building it costs more than
/// evaluating a typical condition. `matches` is ours: the library's
/// compiles its pattern at every call (12–22 ms for `\w`, once per list
/// element inside a macro); ours compiles each pattern once per process.
static STDLIB: std::sync::LazyLock<Arc<cel::Env>> = std::sync::LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    let registered = cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>, id = "matches")
        .and_then(|_| {
            cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>)
        });
    if let Err(e) = registered {
        // Only a clash with the library's own (its `regex` feature) could
        // fail; then `matches` is the library's, slower but correct.
        tracing::error!(error = ?e, "`matches` could not be registered");
    }
    Arc::new(env)
});

/// The compiled patterns, by source.
static PATTERNS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Arc<regex::Regex>>>,
> = std::sync::LazyLock::new(Default::default);

/// `pattern`, compiled within [`PATTERN_SIZE_LIMIT`].
fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// `pattern`, compiled once per process.
fn cached_pattern(pattern: &str) -> Result<Arc<regex::Regex>, regex::Error> {
    let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    if cache.len() >= MAX_PATTERNS {
        // Patterns of revisions long gone (a warm process loads many): start
        // over rather than refuse one, which would count as false.
        cache.clear();
    }
    let re = Arc::new(compile_pattern(pattern)?);
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

/// CEL's `matches`, with the pattern compiled once.
fn matches(this: &CelString<'_>, re: &CelString<'_>) -> Result<CelBool, cel::ExecutionError> {
    let compiled = cached_pattern(re.inner()).map_err(|e| cel::ExecutionError::FunctionError {
        function: "matches".to_owned(),
        message: format!("{:?} is not a valid pattern: {e}", re.inner()),
    })?;
    Ok(CelBool::from(compiled.is_match(this.inner())))
}

/// The top-level fields of `data` that `e` reads; `None` once `data` is
/// used other than by selecting a field.
fn data_fields(e: &IdedExpr, out: &mut Option<Vec<String>>) {
    let visit = |x: &IdedExpr, out: &mut Option<Vec<String>>| data_fields(x, out);
    match &e.expr {
        Expr::Select(s) => match &s.operand.expr {
            Expr::Ident(n) if n == "data" => {
                if let Some(fields) = out
                    && !fields.contains(&s.field)
                {
                    fields.push(s.field.clone());
                }
            }
            _ => visit(&s.operand, out),
        },
        Expr::Ident(n) if n == "data" => *out = None,
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                visit(t, out);
            }
            c.args.iter().for_each(|a| visit(a, out));
        }
        Expr::List(l) => l.elements.iter().for_each(|a| visit(a, out)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    visit(&me.key, out);
                    visit(&me.value, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                visit(x, out);
            }
        }
        Expr::Struct(_) => *out = None,
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// A field of the data a condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldUse {
    /// Its path below `data` (`["accounts", "status"]`).
    pub path: Vec<String>,
    /// Where it is read, in bytes of the condition's source.
    pub at: Range<usize>,
    /// The JSON Schema types a comparison of it expects (`["number",
    /// "integer"]`), and where that comparison is.
    pub compared: Option<(&'static [&'static str], Range<usize>)>,
}

/// A problem found in a condition: a message and where, in bytes of the
/// condition's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub at: Range<usize>,
    pub help: Option<String>,
}

/// Why a condition did not come to true or false for an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// It cannot be evaluated for this data (a field missing, a value of
    /// another type): it counts as false.
    #[error("{0}")]
    Unevaluable(String),
    /// Evaluating it over this data would go past its bounds: it does not
    /// run, and the handler fails (resolved by its `on_error` /
    /// `on_failure`; the same data fails the same way, so it is not retried).
    #[error("{0}")]
    OverBudget(String),
}

/// How deep brackets nest in `source`, outside string literals.
fn bracket_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => {
                let triple = bytes.get(i..i + 3) == Some(&[q, q, q][..]);
                let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R');
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    if bytes[i] == b'\\' && !raw {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if bytes.get(i..i + 3) == Some(&[q, q, q][..]) {
                            i += 3;
                            break;
                        }
                    } else if bytes[i] == q {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// The children of an expression node.
fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Select(s) => vec![&*s.operand],
        Expr::Call(c) => c.target.iter().map(|t| &**t).chain(c.args.iter()).collect(),
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m
            .entries
            .iter()
            .filter_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(me) => Some([&me.key, &me.value]),
                _ => None,
            })
            .flatten()
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// How deep `e` nests, counted without recursion.
fn expression_depth(e: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, level)) = stack.pop() {
        deepest = deepest.max(level);
        stack.extend(children(e).into_iter().map(|c| (c, level + 1)));
    }
    deepest
}

/// What one evaluation can cost, from the expression alone: its nodes, the
/// nodes of each macro's body (run once per element), and the longest list
/// written in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cost {
    nodes: u64,
    per_element: u64,
    longest_literal_list: u64,
}

fn cost_of(root: &IdedExpr) -> Cost {
    let mut cost = Cost::default();
    let mut stack = vec![(root, false)];
    while let Some((e, in_body)) = stack.pop() {
        cost.nodes += 1;
        if in_body {
            cost.per_element += 1;
        }
        match &e.expr {
            Expr::List(l) => {
                cost.longest_literal_list = cost.longest_literal_list.max(l.elements.len() as u64);
            }
            Expr::Comprehension(c) => {
                stack.push((&c.iter_range, in_body));
                stack.push((&c.accu_init, in_body));
                stack.push((&c.result, in_body));
                stack.push((&c.loop_cond, true));
                stack.push((&c.loop_step, true));
                continue;
            }
            _ => {}
        }
        stack.extend(children(e).into_iter().map(|c| (c, in_body)));
    }
    cost
}

/// The longest list (or map) in `value`, counted without recursion.
fn longest_list<'a>(values: impl Iterator<Item = &'a serde_json::Value>) -> u64 {
    let mut longest = 0u64;
    let mut stack: Vec<&serde_json::Value> = values.collect();
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                longest = longest.max(items.len() as u64);
                stack.extend(items);
            }
            serde_json::Value::Object(fields) => {
                longest = longest.max(fields.len() as u64);
                stack.extend(fields.values());
            }
            _ => {}
        }
    }
    longest
}

/// The stack the parser runs on. CEL's parser recurses deeply per level of
/// nesting: a debug build's overflowed a 2 MiB thread (a tokio worker's, a
/// test's) at 16 nested brackets; a release build needs 0.5–1 MiB at 96. A
/// condition is parsed once per config load, so it gets a thread of its
/// own with room to spare (reserved, not committed, memory).
const PARSER_STACK: usize = 64 << 20;

/// `source` parsed and compiled by CEL, on a thread with [`PARSER_STACK`].
fn parse(source: &str) -> Result<Program, cel::ParseErrors> {
    std::thread::scope(|scope| {
        let parsed = std::thread::Builder::new()
            .name("cel-parser".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || STDLIB.compile(source));
        match parsed {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: parse here (the brackets are bounded).
            Err(_) => STDLIB.compile(source),
        }
    })
}

impl Condition {
    /// Compiles `source`; a syntax error comes back with its place.
    pub fn compile(source: &str) -> Result<Condition, Problem> {
        if source.len() > MAX_CONDITION_BYTES {
            return Err(Problem {
                message: format!(
                    "the condition is {} bytes; at most {MAX_CONDITION_BYTES} are allowed",
                    source.len()
                ),
                at: 0..source.len(),
                help: Some("move the logic to the handler, or split it".into()),
            });
        }
        if source.trim().is_empty() {
            return Err(Problem {
                message: "the condition is empty".into(),
                at: 0..source.len(),
                help: Some(
                    "remove `when` to run for every event, or write e.g. `data.balance < 0`".into(),
                ),
            });
        }
        let depth = bracket_depth(source);
        if depth > MAX_BRACKET_DEPTH {
            return Err(Problem {
                message: format!(
                    "brackets nest {depth} levels deep; at most {MAX_BRACKET_DEPTH} are allowed"
                ),
                at: 0..source.len(),
                help: Some("write the condition flatter, or move the logic to the handler".into()),
            });
        }
        match parse(source) {
            Ok(program) => {
                let depth = expression_depth(program.expression());
                if depth > MAX_EXPRESSION_DEPTH {
                    return Err(Problem {
                        message: format!(
                            "the expression nests {depth} levels deep (each operator of a chain is a level); at most {MAX_EXPRESSION_DEPTH} are allowed"
                        ),
                        at: 0..source.len(),
                        help: Some(
                            "use `in [..]` for a list of alternatives, or move the logic to the handler"
                                .into(),
                        ),
                    });
                }
                let mut reads = Some(Vec::new());
                data_fields(program.expression(), &mut reads);
                let cost = cost_of(program.expression());
                Ok(Condition {
                    source: source.to_owned(),
                    program: Arc::new(program),
                    reads: reads.map(Into::into),
                    cost,
                })
            }
            Err(errors) => {
                let first = errors.errors.first();
                let at = first
                    .and_then(|e| offset_of(source, e.pos.0, e.pos.1))
                    .map_or(0..source.len(), |o| o..(o + 1).min(source.len()).max(o));
                let message = first.map_or_else(
                    || "the condition is not valid CEL".to_owned(),
                    |e| format!("the condition is not valid CEL: {}", e.msg),
                );
                Err(Problem {
                    message,
                    at,
                    help: Some(
                        "e.g. `data.balance < 0 && data.tariff in [\"pro\", \"enterprise\"]`"
                            .into(),
                    ),
                })
            }
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The steps evaluating it over `data` can take, at most (see
    /// [`MAX_EVAL_STEPS`]).
    pub fn steps_over(&self, data: &Data) -> u64 {
        let longest = match &self.reads {
            Some(fields) => longest_list(fields.iter().filter_map(|f| data.get(f))),
            None => longest_list(data.values()).max(data.len() as u64),
        }
        .max(self.cost.longest_literal_list);
        self.cost
            .nodes
            .saturating_add(self.cost.per_element.saturating_mul(longest))
    }

    /// Whether the handler is called for `event` with `data`.
    pub fn eval(&self, event: Event, data: &Data) -> Result<bool, EvalError> {
        let steps = self.steps_over(data);
        if steps > MAX_EVAL_STEPS {
            return Err(EvalError::OverBudget(format!(
                "`when` would take up to {steps} steps over this data (its macro's body runs once per element of a list); at most {MAX_EVAL_STEPS} are allowed, so it was not evaluated"
            )));
        }
        let mut context = Context::with_env(STDLIB.clone());
        let data = match &self.reads {
            Some(fields) => map_of(fields.iter().filter_map(|f| data.get_key_value(f))),
            None => map_of(data.iter()),
        };
        context.add_variable_from_value("data", data);
        context.add_variable_from_value("event", Value::from(event.as_str()));
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::Unevaluable(format!(
                "came to {} instead of true or false",
                describe(&other)
            ))),
            Err(e) => Err(EvalError::Unevaluable(e.to_string())),
        }
    }

    /// The fields of the data the condition reads (each once, first use
    /// first), with the JSON types a comparison expects of it.
    pub fn field_uses(&self) -> Vec<FieldUse> {
        let mut checker = Checker {
            program: &self.program,
            source: &self.source,
            locals: Vec::new(),
            macros: Vec::new(),
            fields: BTreeMap::new(),
            accessed: Vec::new(),
            problems: Vec::new(),
        };
        checker.infer(self.program.expression());
        let mut seen = std::collections::BTreeSet::new();
        let mut uses = Vec::new();
        for (path, at) in std::mem::take(&mut checker.accessed) {
            if !seen.insert(path.clone()) {
                continue;
            }
            let compared = checker
                .fields
                .get(&path)
                .map(|(ty, where_)| (ty.json_types(), where_.clone()));
            uses.push(FieldUse {
                path: path
                    .trim_start_matches("data.")
                    .split('.')
                    .map(str::to_owned)
                    .collect(),
                at,
                compared,
            });
        }
        uses
    }

    /// What `hooks validate` can tell without the data.
    pub fn check(&self) -> Vec<Problem> {
        let mut checker = Checker {
            program: &self.program,
            source: &self.source,
            locals: Vec::new(),
            macros: Vec::new(),
            fields: BTreeMap::new(),
            accessed: Vec::new(),
            problems: Vec::new(),
        };
        let root = self.program.expression();
        let ty = checker.infer(root);
        if let Some(t) = ty.known()
            && t != Ty::Bool
        {
            checker.problem(
                root,
                format!(
                    "the condition comes to {} instead of true or false",
                    t.name()
                ),
                Some("compare it, e.g. `data.balance < 0`"),
            );
        }
        checker.problems
    }
}

/// The data as CEL sees it. JSON's integers are CEL `int`s (a `uint` only
/// past `i64`), so that `data.count * 2` and `data.count + 1` work: the
/// `cel` crate's own conversion makes every non-negative integer a `uint`,
/// which CEL's arithmetic refuses to mix with the `int` literals people write.
fn value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(value).collect())),
        J::Object(m) => map_of(m.iter()),
    }
}

fn map_of<'a>(fields: impl Iterator<Item = (&'a String, &'a serde_json::Value)>) -> Value {
    Value::Map(cel::objects::Map {
        map: Arc::new(
            fields
                .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), value(v)))
                .collect(),
        ),
    })
}

/// The byte offset of CEL's 1-based line and column in `source`.
fn offset_of(source: &str, line: isize, column: isize) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let column = usize::try_from(column).ok()?.saturating_sub(1);
    let start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
    let rest = source.get(start..)?;
    let within = rest
        .char_indices()
        .nth(column)
        .map_or(rest.len(), |(i, _)| i);
    Some(start + within)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => format!("the number {i}"),
        Value::UInt(i) => format!("the number {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Null => "null".to_owned(),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a map".to_owned(),
        _ => "a value".to_owned(),
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Condition::compile(&source).map_err(|p| serde::de::Error::custom(p.message))
    }
}

/// What is known of a sub-expression's type without the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Number,
    String,
    Null,
    List,
    Map,
    Bytes,
}

impl Ty {
    /// The JSON Schema types of the values of this type.
    fn json_types(self) -> &'static [&'static str] {
        match self {
            Ty::Bool => &["boolean"],
            Ty::Number => &["number", "integer"],
            Ty::String | Ty::Bytes => &["string"],
            Ty::Null => &["null"],
            Ty::List => &["array"],
            Ty::Map => &["object"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Number => "a number",
            Ty::String => "a string",
            Ty::Null => "null",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Bytes => "bytes",
        }
    }
}

/// A sub-expression's type: known, or the type of a field of the data
/// (unknown until the data comes, but constrained by what it is compared
/// with), or unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Infer {
    Known(Ty),
    Field(String),
    Unknown,
}

impl Infer {
    fn known(&self) -> Option<Ty> {
        match self {
            Infer::Known(t) => Some(*t),
            _ => None,
        }
    }
}

struct Checker<'a> {
    program: &'a Program,
    source: &'a str,
    /// A macro's own variables (`x` in `data.items.all(x, x > 0)`).
    locals: Vec<String>,
    /// The macros (`all`, `exists`, `map`…) around the expression being
    /// checked, innermost last.
    macros: Vec<()>,
    /// The type each field was first compared with, and where.
    fields: BTreeMap<String, (Ty, Range<usize>)>,
    /// Every field of the data read (`data.a`, `data.a.b`), and where.
    accessed: Vec<(String, Range<usize>)>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn span(&self, e: &IdedExpr) -> Range<usize> {
        let len = self.source.len();
        match self.program.source_info().offset_for(e.id) {
            // Byte offsets of the first and the last character (inclusive).
            Some((start, stop)) => {
                let start = floor_char(self.source, start as usize);
                let stop = floor_char(self.source, stop as usize);
                let stop = self.source[stop..]
                    .chars()
                    .next()
                    .map_or(len, |c| stop + c.len_utf8());
                if stop > start {
                    start..stop
                } else {
                    start..(start + 1).min(len)
                }
            }
            None => 0..len,
        }
    }

    fn problem(&mut self, e: &IdedExpr, message: String, help: Option<&str>) {
        let at = self.span(e);
        self.problems.push(Problem {
            message,
            at,
            help: help.map(str::to_owned),
        });
    }

    /// A literal's type.
    fn literal(l: &LiteralValue) -> Infer {
        Infer::Known(match l {
            LiteralValue::Boolean(_) => Ty::Bool,
            LiteralValue::Bytes(_) => Ty::Bytes,
            LiteralValue::Double(_) | LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Number,
            LiteralValue::Null => Ty::Null,
            LiteralValue::String(_) => Ty::String,
        })
    }

    /// An unsigned literal (`1u`) in arithmetic: the data's integers are
    /// `int`s, and CEL does not add, subtract… an `int` and a `uint` (it
    /// compares them).
    fn unsigned_in_arithmetic(&mut self, call: &cel::common::ast::CallExpr) {
        for a in &call.args {
            if let Expr::Literal(LiteralValue::UInt(_)) = a.expr {
                self.problem(
                    a,
                    "an unsigned literal (`1u`) in arithmetic is an error for every event: JSON integers are `int`s here".to_owned(),
                    Some("drop the `u`: write `1`"),
                );
            }
        }
    }

    /// A sub-expression's type, after checking it and what it contains:
    /// each kind of node has its own step below.
    fn infer(&mut self, e: &IdedExpr) -> Infer {
        match &e.expr {
            Expr::Literal(l) => Self::literal(l),
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(s) => self.select(e, s),
            Expr::List(l) => {
                for el in &l.elements {
                    self.infer(el);
                }
                Infer::Known(Ty::List)
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.infer(&me.key);
                        self.infer(&me.value);
                    }
                }
                Infer::Known(Ty::Map)
            }
            Expr::Comprehension(c) => self.comprehension(e, c),
            Expr::Call(call) => self.call(e, call),
            Expr::Struct(_) | Expr::Unspecified => Infer::Unknown,
        }
    }

    /// A variable: `data` or `event`, or a macro's own variable. `data`
    /// inside a macro is refused (its value would be copied per element),
    /// and an unknown name is reported with the closest known one.
    fn ident(&mut self, e: &IdedExpr, name: &str) -> Infer {
        if name == "data" && !self.macros.is_empty() && !self.is_local(name) {
            self.problem(
                e,
                "`data` inside a macro is not allowed".to_owned(),
                Some("read the macro's own variable there (`data.items.all(i, i.qty > 0)`); a value of `data` would be copied once per element"),
            );
            return Infer::Unknown;
        }
        if !VARIABLES.contains(&name) && !self.is_local(name) {
            let help = match crate::events::closest(name, VARIABLES.iter().copied()) {
                Some(s) => format!(
                    "did you mean `{s}`? a condition sees `data` (the event's data) and `event` (its name)"
                ),
                None => {
                    "a condition sees `data` (the event's data) and `event` (its name)".to_owned()
                }
            };
            self.problem(e, format!("unknown variable `{name}`"), Some(&help));
            return Infer::Unknown;
        }
        match name {
            "event" if !self.is_local(name) => Infer::Known(Ty::String),
            "data" if !self.is_local(name) => Infer::Known(Ty::Map),
            _ => Infer::Unknown,
        }
    }

    /// Whether `name` is a macro's own variable here (it hides `data` or
    /// `event` inside the macro).
    fn is_local(&self, name: &str) -> bool {
        self.locals.iter().any(|l| l == name)
    }

    /// `x.field` (or `has(x.field)`): a field of the data keeps its path,
    /// so that what it is compared with can be checked; a field read from
    /// a value that has none is reported.
    fn select(&mut self, e: &IdedExpr, s: &cel::common::ast::SelectExpr) -> Infer {
        let operand = self.infer(&s.operand);
        if s.test {
            return Infer::Known(Ty::Bool);
        }
        match (&s.operand.expr, operand) {
            (Expr::Ident(n), _) if n == "data" && !self.locals.contains(n) => {
                let path = format!("data.{}", s.field);
                self.accessed.push((path.clone(), self.span(e)));
                Infer::Field(path)
            }
            (_, Infer::Field(path)) => {
                let path = format!("{path}.{}", s.field);
                self.accessed.push((path.clone(), self.span(e)));
                Infer::Field(path)
            }
            (_, Infer::Known(t)) if t != Ty::Map => {
                self.problem(
                    e,
                    format!(
                        "`.{}` is read from {}, which has no fields",
                        s.field,
                        t.name()
                    ),
                    None,
                );
                Infer::Unknown
            }
            _ => Infer::Unknown,
        }
    }

    /// A macro (`all`, `exists`, `map`…): refused inside another macro
    /// (what bounds a condition's cost is one pass over one list); its
    /// body is checked with the macro's own variables in scope.
    fn comprehension(&mut self, e: &IdedExpr, c: &cel::common::ast::ComprehensionExpr) -> Infer {
        // What bounds a condition's cost: one pass over one list.
        if !self.macros.is_empty() {
            self.problem(
                e,
                "a macro inside another macro is not allowed".to_owned(),
                Some("its cost would grow with the product of the lists' sizes; test the inner list in its own macro, joined with && or ||"),
            );
            return Infer::Unknown;
        }
        self.infer(&c.iter_range);
        self.macros.push(());
        self.locals.push(c.iter_var.clone());
        if let Some(v) = &c.iter_var2 {
            self.locals.push(v.clone());
        }
        self.locals.push(c.accu_var.clone());
        self.infer(&c.accu_init);
        self.infer(&c.loop_cond);
        self.infer(&c.loop_step);
        let result = self.infer(&c.result);
        let pushed = 2 + usize::from(c.iter_var2.is_some());
        self.locals.truncate(self.locals.len() - pushed);
        self.macros.pop();
        match result {
            Infer::Known(t) => Infer::Known(t),
            _ => Infer::Unknown,
        }
    }

    /// A call: its target and arguments are checked first, then the call
    /// itself, as an operator or as a function.
    fn call(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Infer {
        if let Some(t) = &call.target {
            self.infer(t);
        }
        let args: Vec<Infer> = call.args.iter().map(|a| self.infer(a)).collect();
        match self.operator(e, call, &args) {
            Some(t) => t,
            None => self.function(e, call),
        }
    }

    /// An operator (`&&`, `<`, `in`, `?:`, `+`, `[…]`…) over operands of
    /// types `args`: its type, after checking the operands fit it. `None`
    /// when the call is not one of these operators.
    fn operator(
        &mut self,
        e: &IdedExpr,
        call: &cel::common::ast::CallExpr,
        args: &[Infer],
    ) -> Option<Infer> {
        let name = call.func_name.as_str();
        Some(match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => {
                for (a, t) in call.args.iter().zip(args) {
                    self.expect_bool(a, t, name);
                }
                Infer::Known(Ty::Bool)
            }
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::EQUALS
            | operators::NOT_EQUALS => {
                if let ([a, b], [ta, tb]) = (call.args.as_slice(), args) {
                    let ordering = !matches!(name, operators::EQUALS | operators::NOT_EQUALS);
                    self.compare(e, (a, ta), (b, tb), ordering);
                }
                Infer::Known(Ty::Bool)
            }
            operators::IN => {
                if let ([_, b], [ta, tb]) = (call.args.as_slice(), args) {
                    self.membership(e, ta, (b, tb));
                }
                Infer::Known(Ty::Bool)
            }
            operators::CONDITIONAL => {
                if let (Some(c), Some(t)) = (call.args.first(), args.first()) {
                    self.expect_bool(c, t, "?:");
                }
                match (args.get(1), args.get(2)) {
                    (Some(Infer::Known(a)), Some(Infer::Known(b))) if a == b => Infer::Known(*a),
                    _ => Infer::Unknown,
                }
            }
            // `+` adds numbers, joins strings or lists: a known side tells which.
            operators::ADD => {
                self.unsigned_in_arithmetic(call);
                match (args.first(), args.get(1)) {
                    (Some(Infer::Known(a)), _) | (_, Some(Infer::Known(a))) => Infer::Known(*a),
                    _ => Infer::Unknown,
                }
            }
            operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => {
                self.unsigned_in_arithmetic(call);
                Infer::Known(Ty::Number)
            }
            operators::INDEX => self.index(call, args),
            _ => return None,
        })
    }

    /// `x[k]`: `data['a']` is `data.a`, the same field with the same type.
    fn index(&self, call: &cel::common::ast::CallExpr, args: &[Infer]) -> Infer {
        match (call.args.get(1).map(|k| &k.expr), args.first()) {
            (Some(Expr::Literal(LiteralValue::String(k))), Some(Infer::Known(Ty::Map))) if matches!(&call.args[0].expr, Expr::Ident(n) if n == "data" && !self.locals.contains(n)) => {
                Infer::Field(format!("data.{}", k.inner()))
            }
            (Some(Expr::Literal(LiteralValue::String(k))), Some(Infer::Field(path))) => {
                Infer::Field(format!("{path}.{}", k.inner()))
            }
            _ => Infer::Unknown,
        }
    }

    /// A function or macro called by name (`size`, `matches`, `all`…):
    /// its type; `matches`' pattern is checked, and an unknown function is
    /// reported with the closest known one.
    fn function(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Infer {
        let name = call.func_name.as_str();
        match name {
            "matches" => {
                self.pattern(call);
                Infer::Known(Ty::Bool)
            }
            "@not_strictly_false" => Infer::Known(Ty::Bool),
            "size" | "int" | "uint" | "double" => Infer::Known(Ty::Number),
            "string" => Infer::Known(Ty::String),
            "has" | "all" | "exists" | "exists_one" | "contains" | "startsWith" | "endsWith"
            | "bool" => Infer::Known(Ty::Bool),
            "map" | "filter" => Infer::Known(Ty::List),
            _ if FUNCTIONS.contains(&name) => Infer::Unknown,
            _ if name.starts_with('_') || name.starts_with('@') || name.starts_with('!') => {
                Infer::Unknown
            }
            _ => {
                let help = match crate::events::closest(name, FUNCTIONS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("CEL's functions are {}", FUNCTIONS.join(", ")),
                };
                self.problem(e, format!("unknown function `{name}`"), Some(&help));
                Infer::Unknown
            }
        }
    }

    /// `matches`' pattern (the last argument: `s.matches(p)`,
    /// `matches(s, p)`) must be a string in the condition, and compile.
    fn pattern(&mut self, call: &cel::common::ast::CallExpr) {
        // The pattern: the last argument (`s.matches(p)`, `matches(s, p)`).
        if let Some(p) = call.args.last() {
            match &p.expr {
                Expr::Literal(LiteralValue::String(pattern)) => {
                    if let Err(err) = compile_pattern(pattern.inner()) {
                        self.problem(
                            p,
                            format!("not a valid pattern: {err}"),
                            Some("the syntax of Rust's `regex` crate (RE2-like)"),
                        );
                    }
                }
                _ => self.problem(
                    p,
                    "the pattern of `matches` must be written in the condition, as a string".to_owned(),
                    Some("a pattern taken from the data would be compiled for every event; write it out, e.g. `data.email.matches('^[^@]+@example[.]com$')`"),
                ),
            }
        }
    }

    fn expect_bool(&mut self, e: &IdedExpr, t: &Infer, op: &str) {
        if let Infer::Known(t) = t
            && *t != Ty::Bool
        {
            let op = op.trim_matches(|c| c == '_' || c == '@');
            self.problem(
                e,
                format!("`{op}` needs true or false here, not {}", t.name()),
                None,
            );
        }
    }

    /// A field compared with a value of a known type: remember it, and say
    /// so when the same field was compared with another type elsewhere.
    fn constrain(&mut self, field: &str, ty: Ty, at: &IdedExpr) {
        if ty == Ty::Null {
            return; // `data.x == null` fits a field of any type
        }
        let span = self.span(at);
        match self.fields.get(field) {
            None => {
                self.fields.insert(field.to_owned(), (ty, span));
            }
            Some((first, where_)) if *first != ty => {
                let earlier = self.source.get(where_.clone()).unwrap_or("").to_owned();
                let first = *first;
                self.problem(
                    at,
                    format!(
                        "`{field}` is compared with {} here and with {} at `{earlier}`",
                        ty.name(),
                        first.name()
                    ),
                    Some("a field has one type; a comparison of the other type is an error for every event"),
                );
            }
            Some(_) => {}
        }
    }

    fn compare(
        &mut self,
        e: &IdedExpr,
        (a, ta): (&IdedExpr, &Infer),
        (b, tb): (&IdedExpr, &Infer),
        ordering: bool,
    ) {
        match (ta, tb) {
            (Infer::Field(f), Infer::Known(t)) => self.constrain(f, *t, b),
            (Infer::Known(t), Infer::Field(f)) => self.constrain(f, *t, a),
            (Infer::Known(x), Infer::Known(y)) if x != y && *x != Ty::Null && *y != Ty::Null => {
                self.problem(
                    e,
                    format!(
                        "{} is compared with {}: always an error",
                        x.name(),
                        y.name()
                    ),
                    None,
                );
            }
            _ => {}
        }
        for t in [ta, tb] {
            if ordering && let Infer::Known(t @ (Ty::Bool | Ty::Null | Ty::List | Ty::Map)) = t {
                self.problem(
                    e,
                    format!("{} cannot be ordered with <, <=, > or >=", t.name()),
                    None,
                );
            }
        }
    }

    fn membership(&mut self, e: &IdedExpr, ta: &Infer, (b, tb): (&IdedExpr, &Infer)) {
        match tb {
            Infer::Known(Ty::List | Ty::Map) | Infer::Field(_) | Infer::Unknown => {}
            Infer::Known(t) => {
                self.problem(
                    e,
                    format!("`in` looks in a list or a map, not in {}", t.name()),
                    Some("e.g. `data.tariff in [\"pro\", \"enterprise\"]`"),
                );
                return;
            }
        }
        let Expr::List(list) = &b.expr else { return };
        let mut types = list.elements.iter().filter_map(|el| match &el.expr {
            Expr::Literal(l) => Some(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Null => Ty::Null,
                LiteralValue::Bytes(_) => Ty::Bytes,
                _ => Ty::Number,
            }),
            _ => None,
        });
        let Some(first) = types.next() else { return };
        if types.any(|t| t != first) {
            self.problem(
                b,
                "the list mixes values of different types".to_owned(),
                None,
            );
            return;
        }
        match ta {
            Infer::Field(f) => {
                let f = f.clone();
                self.constrain(&f, first, b);
            }
            Infer::Known(t) if *t != first => self.problem(
                e,
                format!("{} is looked for in a list of {}", t.name(), first.name()),
                None,
            ),
            _ => {}
        }
    }
}

/// `at` (a byte offset), moved back to the start of its character.
fn floor_char(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests;
