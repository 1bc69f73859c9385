//! Reading `handlers.toml`: the TOML is parsed with spans, then walked by hand
//! so that every problem is reported in one run, each with the place it comes
//! from and a way to fix it.

mod read;
mod schemas;
mod target;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::condition::Condition;
use super::diagnostics::Diag;
use super::model::*;
use crate::events::EventPattern;
use read::{Cx, Val, one_of, type_name};
pub use target::{MAX_TIMEOUT, is_loopback_host};

/// The longest a retry schedule may last in all, with the most jitter (+10 %)
/// added: SQS keeps a message at most 14 days, counted from when it was sent.
pub const MAX_RETRY_TOTAL: Duration = Duration::from_secs(13 * 24 * 3600);

const ROOT_KEYS: &[&str] = &["version", "defaults", "schemas", "handler"];
const DEFAULTS_KEYS: &[&str] = &[
    "timeout",
    "decision_timeout",
    "retry",
    "pause_after",
    "pause_window",
    "probe_every",
];
const RETRY_KEYS: &[&str] = &["schedule"];
const HANDLER_KEYS: &[&str] = &[
    "id",
    "name",
    "event",
    "priority",
    "status",
    "phase",
    "on_error",
    "on_failure",
    "retry",
    "pause_after",
    "when",
    "http",
    "script",
];

/// Options for checks that depend on where the file is.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions<'a> {
    /// When set, script commands with a relative path must exist below it.
    pub scripts_dir: Option<&'a Path>,
}

/// Reads and validates the text of a `handlers.toml`: every problem found,
/// placed in the file, or the configuration.
pub(crate) fn parse(src: &str, opts: &ParseOptions<'_>) -> Result<Config, Vec<Diag>> {
    let mut cx = Cx {
        diags: Vec::new(),
        scripts_dir: opts.scripts_dir,
        src,
        event_schemas: Default::default(),
    };
    if src.trim().is_empty() {
        return Err(vec![
            Diag::new(0..0, "the file is empty")
                .label("nothing here")
                .help("start with `version = 1`, then add a `[[handler]]` table for each handler"),
        ]);
    }
    let (doc, syntax) = DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        // Checking the meaning of a broken document only adds noise.
        return Err(syntax
            .into_iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim().replace('\n', " ");
                Diag::new(span, format!("invalid TOML: {message}"))
                    .label("here")
                    .help("see https://toml.io for the syntax")
            })
            .collect());
    }
    let config = cx.root(doc.get_ref());
    let mut diags = cx.diags;
    if diags.is_empty()
        && let Some(config) = config
    {
        return Ok(config);
    }
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    Err(diags)
}

/// What a handler does when it fails (see [`Cx::failure_policy`]).
#[derive(Default)]
struct FailurePolicy {
    on_error: OnError,
    on_failure: OnFailure,
    retry: Option<RetryPolicy>,
    pause_after: Option<u32>,
}

impl Cx<'_> {
    fn root(&mut self, doc: &DeTable<'_>) -> Option<Config> {
        self.unknown_keys(doc, ROOT_KEYS, "the top level of the file");
        let version = match doc.get("version") {
            None => {
                self.push(
                    Diag::new(0..0, "missing `version`")
                        .label("expected `version = 1` at the top of the file")
                        .help(format!(
                            "add `version = {SCHEMA_VERSION}` as the first line"
                        )),
                );
                None
            }
            Some(v) => match self.integer("version", v) {
                None => None,
                Some(n) if n == i64::from(SCHEMA_VERSION) => Some(SCHEMA_VERSION),
                Some(n) => {
                    self.push(
                        Diag::new(v.span(), format!("unsupported schema version {n}"))
                            .label("unknown version")
                            .help(format!("this build reads `version = {SCHEMA_VERSION}`")),
                    );
                    None
                }
            },
        };
        let defaults = match doc.get("defaults") {
            None => Some(Defaults::default()),
            Some(v) => self
                .table(
                    "defaults",
                    v,
                    "write `[defaults]` followed by `timeout = \"10s\"`",
                )
                .and_then(|t| self.defaults(t)),
        };
        let schemas = match doc.get("schemas") {
            None => Some(super::schemas::Schemas::default()),
            Some(v) => self.schemas(v),
        };
        if let Some(s) = &schemas {
            self.event_schemas = s.by_event.clone();
        }
        let handlers = self.handlers(doc);
        Some(Config {
            version: version?,
            defaults: defaults?,
            schemas: schemas?,
            handlers: handlers?,
        })
    }

    fn defaults(&mut self, t: &DeTable<'_>) -> Option<Defaults> {
        self.unknown_keys(t, DEFAULTS_KEYS, "[defaults]");
        let fallback = Defaults::default();
        let timeout = self.optional(t, "timeout", |cx, v| cx.duration("timeout", v, MAX_TIMEOUT));
        let decision_timeout = self.optional(t, "decision_timeout", |cx, v| {
            cx.duration("decision_timeout", v, Duration::from_secs(60))
        });
        let retry = self.optional(t, "retry", |cx, v| cx.retry(v));
        let pause_after = self.optional(t, "pause_after", |cx, v| cx.pause_after(v));
        let pause_window = self.optional(t, "pause_window", |cx, v| {
            // "0s": the count alone decides.
            match v.get_ref() {
                DeValue::String(s) if humantime::parse_duration(s).is_ok_and(|d| d.is_zero()) => {
                    Some(Duration::ZERO)
                }
                _ => cx.duration("pause_window", v, Duration::from_secs(3600)),
            }
        });
        let probe_every = self.optional(t, "probe_every", |cx, v| {
            cx.duration("probe_every", v, Duration::from_secs(3600))
        });
        Some(Defaults {
            timeout: timeout.ok()?.unwrap_or(fallback.timeout),
            decision_timeout: decision_timeout.ok()?.unwrap_or(fallback.decision_timeout),
            retry: retry.ok()?.unwrap_or(fallback.retry),
            pause_after: pause_after.ok()?.unwrap_or(fallback.pause_after),
            pause_window: pause_window.ok()?.unwrap_or(fallback.pause_window),
            probe_every: probe_every.ok()?.unwrap_or(fallback.probe_every),
        })
    }

    fn retry(&mut self, v: &Val<'_>) -> Option<RetryPolicy> {
        let t = self.table(
            "retry",
            v,
            "write `retry = { schedule = [\"30s\", \"5m\", \"1h\"] }`",
        )?;
        self.unknown_keys(t, RETRY_KEYS, "retry");
        let Some(sv) = t.get("schedule") else {
            self.push(
                Diag::new(v.span(), "missing `schedule` in retry")
                    .label("no schedule")
                    .help(
                        "list the delays between attempts: `schedule = [\"30s\", \"5m\", \"1h\"]`",
                    ),
            );
            return None;
        };
        let DeValue::Array(items) = sv.get_ref() else {
            self.push(
                Diag::new(sv.span(), "`schedule` must be an array of durations")
                    .label(format!("this is {}", type_name(sv.get_ref())))
                    .help("e.g. `schedule = [\"30s\", \"5m\", \"1h\"]`"),
            );
            return None;
        };
        if items.is_empty() {
            self.push(
                Diag::new(sv.span(), "`schedule` is empty")
                    .label("no delays")
                    .help("list at least one delay; a handler that must not be retried can use `on_failure = \"skip\"`"),
            );
            return None;
        }
        let mut schedule = Vec::with_capacity(items.len());
        for item in items.iter() {
            schedule.push(self.duration("schedule", item, MAX_RETRY_DELAY));
        }
        let policy = schedule
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(|schedule| RetryPolicy { schedule })?;
        if policy.total().mul_f64(1.0 + RetryPolicy::JITTER) > MAX_RETRY_TOTAL {
            self.push(
                Diag::new(sv.span(), "the retry schedule is too long")
                    .label(format!(
                        "{} in all, up to {} with jitter",
                        humantime::format_duration(policy.total()),
                        humantime::format_duration(Duration::from_secs(
                            policy.total().mul_f64(1.0 + RetryPolicy::JITTER).as_secs()
                        ))
                    ))
                    .help(
                        "the delays, plus up to 10 % jitter, may add up to 13 days at most: SQS keeps a message for 14 days",
                    ),
            );
            return None;
        }
        Some(policy)
    }

    fn handlers(&mut self, doc: &DeTable<'_>) -> Option<Vec<Handler>> {
        let Some(v) = doc.get("handler") else {
            self.push(
                Diag::new(0..0, "no handlers defined")
                    .label("expected at least one `[[handler]]` table")
                    .help("add a handler:\n[[handler]]\nid = 1\nname = \"…\"\nevent = \"clients.create\"\npriority = 1\nhttp = { url = \"https://…\" }"),
            );
            return None;
        };
        let items: Vec<&Val<'_>> = match v.get_ref() {
            DeValue::Array(a) => a.iter().collect(),
            DeValue::Table(_) => {
                self.push(
                    Diag::new(v.span(), "`handler` must be an array of tables")
                        .label("a single table")
                        .help("write `[[handler]]` (double brackets) for each handler"),
                );
                return None;
            }
            other => {
                self.push(
                    Diag::new(v.span(), "`handler` must be an array of tables")
                        .label(format!("this is {}", type_name(other)))
                        .help("write `[[handler]]` (double brackets) for each handler"),
                );
                return None;
            }
        };
        let mut seen: HashMap<HandlerId, Range<usize>> = HashMap::new();
        let max_id = items
            .iter()
            .filter_map(|h| h.get_ref().get("id"))
            .filter_map(|id| id.get_ref().as_integer())
            .filter_map(|i| u32::from_str_radix(i.as_str(), i.radix()).ok())
            .max()
            .unwrap_or(0);
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(t) = self.table(
                "handler",
                item,
                "write each handler as a `[[handler]]` table",
            ) else {
                ok = false;
                continue;
            };
            // The id on its own: a duplicate is reported even when either
            // handler has other problems too.
            let raw_id = item.get_ref().get("id").and_then(|v| {
                let i = v.get_ref().as_integer()?;
                let id = u32::from_str_radix(i.as_str(), i.radix()).ok()?;
                Some((id, v.span()))
            });
            if let Some((id, id_span)) = raw_id {
                if let Some(first) = seen.get(&id) {
                    self.push(
                        Diag::new(id_span, format!("duplicate handler id {id}"))
                            .label("used again here")
                            .related(first.clone(), "first used here")
                            .help(match max_id.checked_add(1) {
                                Some(next) => format!(
                                    "ids are permanent and unique: give this handler an unused id, e.g. {next}"
                                ),
                                None => "ids are permanent and unique: give this handler an unused id".to_owned(),
                            }),
                    );
                    ok = false;
                } else {
                    seen.insert(id, id_span);
                }
            }
            match self.handler(t, item.span()) {
                Some((h, _)) => out.push(h),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn required<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        key: &str,
        span: &Range<usize>,
        example: &str,
    ) -> Option<&'a Val<'i>> {
        let v = t.get(key);
        if v.is_none() {
            self.push(
                Diag::new(span.clone(), format!("handler is missing `{key}`"))
                    .label(format!("no `{key}` in this handler"))
                    .help(format!("add `{example}`")),
            );
        }
        v
    }

    /// One `[[handler]]` table, with the span of its id (or of the table,
    /// when it has none). Every key is checked even when an earlier one is
    /// wrong, so that one run reports every problem.
    fn handler(&mut self, t: &DeTable<'_>, span: Range<usize>) -> Option<(Handler, Range<usize>)> {
        self.unknown_keys(t, HANDLER_KEYS, "a handler");
        let (id, id_span) = self.handler_id(t, &span);
        let name = self.handler_name(t, &span);
        let events = self
            .required(t, "event", &span, "event = \"clients.create\"")
            .and_then(|v| self.events(v));
        let priority = self.priority(t, &span);
        let status = match t.get("status") {
            None => Some(Status::Enabled),
            Some(v) => self.choice("status", v, Status::NAMES, Status::from_name),
        };
        let phase = match t.get("phase") {
            None => Some(Phase::After),
            Some(v) => self.choice("phase", v, Phase::NAMES, Phase::from_name),
        };
        let failure = self.failure_policy(t, phase);
        let when = match t.get("when") {
            None => Some(None),
            Some(v) => self.condition(v, events.as_deref()).map(Some),
        };
        let target = self.target(t, &span);
        let failure = failure?;
        Some((
            Handler {
                id: id?,
                name: name?,
                events: events?,
                priority: priority?,
                status: status?,
                phase: phase?,
                on_error: failure.on_error,
                on_failure: failure.on_failure,
                retry: failure.retry,
                pause_after: failure.pause_after,
                when: when?,
                target: target?,
            },
            id_span,
        ))
    }

    /// A handler's `id` (required): a positive whole number. Also gives
    /// where the id is written, or the handler's span without one.
    fn handler_id(
        &mut self,
        t: &DeTable<'_>,
        span: &Range<usize>,
    ) -> (Option<HandlerId>, Range<usize>) {
        let id = self.required(t, "id", span, "id = <a number never used before>");
        let id_span = id.map(|v| v.span()).unwrap_or_else(|| span.clone());
        let id = id.and_then(|v| {
            let n = self.integer("id", v)?;
            match HandlerId::try_from(n) {
                Ok(id) if id >= 1 => Some(id),
                _ => {
                    self.push(
                        Diag::new(v.span(), "`id` must be a positive whole number")
                            .label(format!("{n} is not a valid id"))
                            .help(format!("use a number from 1 to {}", HandlerId::MAX)),
                    );
                    None
                }
            }
        });
        (id, id_span)
    }

    /// A handler's `name` (required): what it does, not blank.
    fn handler_name(&mut self, t: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
        let v = self.required(t, "name", span, "name = \"Softswitch: create client\"")?;
        let s = self.string("name", v)?;
        if s.trim().is_empty() {
            self.push(
                Diag::new(v.span(), "`name` is empty")
                    .label("empty")
                    .help("say what the handler does, e.g. \"CRM: sync client\""),
            );
            return None;
        }
        Some(s.to_owned())
    }

    /// A handler's `priority` (required): 1 or more; 1 runs first.
    fn priority(&mut self, t: &DeTable<'_>, span: &Range<usize>) -> Option<u32> {
        let v = self.required(
            t,
            "priority",
            span,
            "priority = 1   # 1 runs first; ties go by id",
        )?;
        let n = self.integer("priority", v)?;
        match u32::try_from(n) {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                self.push(
                    Diag::new(v.span(), "`priority` must be 1 or more")
                        .label(format!("{n} is not a valid priority"))
                        .help("priority 1 runs before every other; ties are broken by id"),
                );
                None
            }
        }
    }

    /// How a handler's failure resolves: `on_error` for a before handler,
    /// `on_failure`, `retry` and `pause_after` for an after handler. A key
    /// set in the other `phase` is reported. `None` when any is invalid.
    fn failure_policy(&mut self, t: &DeTable<'_>, phase: Option<Phase>) -> Option<FailurePolicy> {
        let mut ok = true;
        let mut policy = FailurePolicy::default();
        if let Some(v) = t.get("on_error") {
            match self.choice("on_error", v, OnError::NAMES, OnError::from_name) {
                Some(x) => policy.on_error = x,
                None => ok = false,
            }
            ok &= self.in_phase(phase, Phase::After, || {
                Diag::new(v.span(), "`on_error` applies to `before` handlers only")
                    .label("ignored in the after phase")
                    .help("an after handler uses `on_failure = \"block\"` (retry from here) or `\"skip\"`; or set `phase = \"before\"`")
            });
        }
        if let Some(v) = t.get("on_failure") {
            match self.choice("on_failure", v, OnFailure::NAMES, OnFailure::from_name) {
                Some(x) => policy.on_failure = x,
                None => ok = false,
            }
            ok &= self.in_phase(phase, Phase::Before, || {
                Diag::new(v.span(), "`on_failure` applies to `after` handlers only")
                    .label("ignored in the before phase")
                    .help("a before handler uses `on_error = \"forbid\"` (fail closed) or `\"allow\"` (fail open)")
            });
        }
        if let Some(v) = t.get("retry") {
            policy.retry = self.retry(v);
            ok &= policy.retry.is_some();
            ok &= self.in_phase(phase, Phase::Before, || {
                Diag::new(v.span(), "`retry` applies to `after` handlers only")
                    .label("a before handler is asked once")
                    .help("remove `retry`; a before handler's failure resolves by its `on_error`")
            });
        }
        if let Some(v) = t.get("pause_after") {
            policy.pause_after = self.pause_after(v);
            ok &= policy.pause_after.is_some();
            ok &= self.in_phase(phase, Phase::Before, || {
                Diag::new(v.span(), "`pause_after` applies to `after` handlers only")
                    .label("a before handler is never paused")
                    .help("remove `pause_after`; a before handler's failure resolves by its `on_error`")
            });
        }
        ok.then_some(policy)
    }

    /// A key that does not apply to handlers of the `wrong` phase: when
    /// the handler's `phase` is that one, the problem `diag` is reported
    /// and the key is not in place (false).
    fn in_phase(
        &mut self,
        phase: Option<Phase>,
        wrong: Phase,
        diag: impl FnOnce() -> Diag,
    ) -> bool {
        if phase == Some(wrong) {
            self.push(diag());
            return false;
        }
        true
    }

    /// `pause_after = N`: retryable failures in a row before the handler
    /// is paused; 0 never pauses it.
    fn pause_after(&mut self, v: &Val<'_>) -> Option<u32> {
        let n = self.integer("pause_after", v)?;
        match u32::try_from(n) {
            Ok(n) if n <= 1000 => Some(n),
            _ => {
                self.push(
                    Diag::new(v.span(), "`pause_after` must be from 0 to 1000")
                        .label(format!("{n} is out of range"))
                        .help("the retryable failures in a row that pause the handler; 0 never pauses it"),
                );
                None
            }
        }
    }

    /// `when = "…"`: compiled, and checked for what is knowable without the
    /// data; each problem is placed inside the string when the string is
    /// written without escapes (else on the whole value).
    fn condition(&mut self, v: &Val<'_>, events: Option<&[EventPattern]>) -> Option<Condition> {
        const HOW: &str = "a condition is a CEL expression over `data`, e.g. `data.balance < 0 && data.tariff in [\"pro\", \"enterprise\"]`";
        let text = self.string("when", v)?;
        let span = v.span();
        let raw = self.src.get(span.clone()).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let inner = raw
            .get(quote..raw.len().saturating_sub(quote))
            .unwrap_or("");
        let place = |at: &Range<usize>| {
            if inner == text {
                (span.start + quote + at.start)..(span.start + quote + at.end.max(at.start))
            } else {
                span.clone()
            }
        };
        let problems = match Condition::compile(text) {
            Err(p) => vec![p],
            Ok(c) => {
                let mut problems = c.check();
                if problems.is_empty() {
                    problems = self.schema_problems(&c, events.unwrap_or_default());
                }
                if problems.is_empty() {
                    return Some(c);
                }
                problems
            }
        };
        for p in problems {
            let at = place(&p.at);
            let label = self
                .src
                .get(at.clone())
                .filter(|s| s.len() > 1 && s.len() <= 40)
                .map_or_else(|| "here".to_owned(), |s| format!("`{s}`"));
            self.push(
                Diag::new(at, format!("`when`: {}", p.message))
                    .label(label)
                    .help(p.help.unwrap_or_else(|| HOW.to_owned())),
            );
        }
        None
    }

    /// The fields `c` reads against the schemas of the handler's event
    /// types (those that have one): a field a schema does not list, or one
    /// compared with a value of a type the schema rules out, is a problem.
    fn schema_problems(
        &self,
        c: &Condition,
        events: &[EventPattern],
    ) -> Vec<super::condition::Problem> {
        let schemas: Vec<(crate::events::Event, &serde_json::Value)> = self
            .event_schemas
            .iter()
            .filter(|(e, _)| events.iter().any(|p| p.matches(**e)))
            .map(|(e, s)| (*e, s))
            .collect();
        let mut problems: Vec<super::condition::Problem> = Vec::new();
        for use_ in c.field_uses() {
            for (event, schema) in &schemas {
                let compared = use_.compared.as_ref().map(|(t, _)| *t);
                let Err(m) = super::schemas::check_field(schema, &use_.path, compared) else {
                    continue;
                };
                let at = match (&m, &use_.compared) {
                    (super::schemas::FieldMismatch::Type { .. }, Some((_, at))) => at.clone(),
                    _ => use_.at.clone(),
                };
                let message = format!("{m} (the schema of {event})");
                if problems.iter().all(|p| p.at != at) {
                    problems.push(super::condition::Problem {
                        message,
                        at,
                        help: Some(format!(
                            "a condition reads the fields its events' schemas describe: fix the condition, or the schema in {}",
                            "the [schemas] folder"
                        )),
                    });
                }
            }
        }
        problems
    }

    fn events(&mut self, v: &Val<'_>) -> Option<Vec<EventPattern>> {
        let items: Vec<&Val<'_>> = match v.get_ref() {
            DeValue::String(_) => vec![v],
            DeValue::Array(a) if a.is_empty() => {
                self.push(
                    Diag::new(v.span(), "`event` is empty")
                        .label("no events")
                        .help("name at least one event, e.g. `event = \"clients.create\"`"),
                );
                return None;
            }
            DeValue::Array(a) => a.iter().collect(),
            other => {
                self.push(
                    Diag::new(v.span(), "`event` must be an event name or a list of them")
                        .label(format!("this is {}", type_name(other)))
                        .help("e.g. `event = \"clients.create\"`, `event = [\"accounts.create\", \"accounts.update\"]` or `event = \"clients.*\"`"),
                );
                return None;
            }
        };
        let mut out: Vec<EventPattern> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(s) = self.string("event", item) else {
                ok = false;
                continue;
            };
            match s.parse::<EventPattern>() {
                Ok(p) if out.contains(&p) => {
                    self.push(
                        Diag::new(item.span(), format!("event `{p}` is listed twice"))
                            .label("repeated")
                            .help("remove the repetition"),
                    );
                    ok = false;
                }
                Ok(p) => out.push(p),
                Err(e) => {
                    let help = match e.suggestion {
                        Some(s) => {
                            format!("did you mean `{s}`? run `hooks events` for the catalogue")
                        }
                        None => format!(
                            "events are named `group.action`, e.g. `clients.create`, or `group.*` for a whole group; groups: {}",
                            one_of(&["clients", "accounts", "subscriptions", "import"])
                        ),
                    };
                    self.push(
                        Diag::new(item.span(), format!("unknown event `{s}`"))
                            .label("not in the event catalogue")
                            .help(help),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
