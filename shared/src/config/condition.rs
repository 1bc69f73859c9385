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
use cel::{Context, IdedExpr, Program, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::events::Event;
use crate::protocol::Data;

/// The longest condition accepted: it is evaluated for every event the
/// handler listens to.
pub const MAX_CONDITION_BYTES: usize = 1024;

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
}

/// CEL's standard library, built once: building it costs more than
/// evaluating a typical condition.
static STDLIB: std::sync::LazyLock<Arc<cel::Env>> =
    std::sync::LazyLock::new(|| Arc::new(cel::Env::stdlib()));

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

/// A problem found in a condition: a message and where, in bytes of the
/// condition's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub at: Range<usize>,
    pub help: Option<String>,
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
        match STDLIB.compile(source) {
            Ok(program) => {
                let mut reads = Some(Vec::new());
                data_fields(program.expression(), &mut reads);
                Ok(Condition {
                    source: source.to_owned(),
                    program: Arc::new(program),
                    reads: reads.map(Into::into),
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

    /// Whether the handler is called for `event` with `data`; `Err` says
    /// why the expression could not be evaluated (it then counts as false).
    pub fn eval(&self, event: Event, data: &Data) -> Result<bool, String> {
        let mut context = Context::with_env(STDLIB.clone());
        let data = match &self.reads {
            Some(fields) => map_of(fields.iter().filter_map(|f| data.get_key_value(f))),
            None => map_of(data.iter()),
        };
        context.add_variable_from_value("data", data);
        context.add_variable_from_value("event", Value::from(event.as_str()));
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "came to {} instead of true or false",
                describe(&other)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// What `hooks validate` can tell without the data.
    pub fn check(&self) -> Vec<Problem> {
        let mut checker = Checker {
            program: &self.program,
            source: &self.source,
            locals: Vec::new(),
            macros: Vec::new(),
            fields: BTreeMap::new(),
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

    fn infer(&mut self, e: &IdedExpr) -> Infer {
        match &e.expr {
            Expr::Literal(l) => Infer::Known(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) | LiteralValue::Int(_) | LiteralValue::UInt(_) => {
                    Ty::Number
                }
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
            }),
            Expr::Ident(name)
                if name == "data" && !self.macros.is_empty() && !self.locals.contains(name) =>
            {
                self.problem(
                    e,
                    "`data` inside a macro is not allowed".to_owned(),
                    Some("read the macro's own variable there (`data.items.all(i, i.qty > 0)`); a value of `data` would be copied once per element"),
                );
                Infer::Unknown
            }
            Expr::Ident(name) => {
                if !VARIABLES.contains(&name.as_str()) && !self.locals.contains(name) {
                    let help = match crate::events::closest(name, VARIABLES.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? a condition sees `data` (the event's data) and `event` (its name)"
                        ),
                        None => "a condition sees `data` (the event's data) and `event` (its name)"
                            .to_owned(),
                    };
                    self.problem(e, format!("unknown variable `{name}`"), Some(&help));
                    return Infer::Unknown;
                }
                match name.as_str() {
                    "event" if !self.locals.contains(name) => Infer::Known(Ty::String),
                    "data" if !self.locals.contains(name) => Infer::Known(Ty::Map),
                    _ => Infer::Unknown,
                }
            }
            Expr::Select(s) => {
                let operand = self.infer(&s.operand);
                if s.test {
                    return Infer::Known(Ty::Bool);
                }
                match (&s.operand.expr, operand) {
                    (Expr::Ident(n), _) if n == "data" && !self.locals.contains(n) => {
                        Infer::Field(format!("data.{}", s.field))
                    }
                    (_, Infer::Field(path)) => Infer::Field(format!("{path}.{}", s.field)),
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
            Expr::Comprehension(c) => {
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
            Expr::Call(call) => self.call(e, call),
            Expr::Struct(_) | Expr::Unspecified => Infer::Unknown,
        }
    }

    fn call(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Infer {
        let name = call.func_name.as_str();
        let target = call.target.as_ref().map(|t| self.infer(t));
        let args: Vec<Infer> = call.args.iter().map(|a| self.infer(a)).collect();
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => {
                for (a, t) in call.args.iter().zip(&args) {
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
                if let ([a, b], [ta, tb]) = (call.args.as_slice(), args.as_slice()) {
                    let ordering = !matches!(name, operators::EQUALS | operators::NOT_EQUALS);
                    self.compare(e, (a, ta), (b, tb), ordering);
                }
                Infer::Known(Ty::Bool)
            }
            operators::IN => {
                if let ([_, b], [ta, tb]) = (call.args.as_slice(), args.as_slice()) {
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
            operators::ADD => match (args.first(), args.get(1)) {
                (Some(Infer::Known(a)), _) | (_, Some(Infer::Known(a))) => Infer::Known(*a),
                _ => Infer::Unknown,
            },
            operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => Infer::Known(Ty::Number),
            operators::INDEX => Infer::Unknown,
            "@not_strictly_false" => Infer::Known(Ty::Bool),
            "size" | "int" | "uint" | "double" => Infer::Known(Ty::Number),
            "string" => Infer::Known(Ty::String),
            "has" | "all" | "exists" | "exists_one" | "contains" | "startsWith" | "endsWith"
            | "matches" | "bool" => Infer::Known(Ty::Bool),
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
                let _ = target;
                self.problem(e, format!("unknown function `{name}`"), Some(&help));
                Infer::Unknown
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
