//! Reading `handlers.toml`: the TOML is parsed with spans, then walked by hand
//! so that every problem is reported in one run, each with the place it comes
//! from and a way to fix it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::time::Duration;

use http::header::HeaderName;
use toml::Spanned;

use super::condition::Condition;
use toml::de::{DeTable, DeValue};
use url::Url;

use super::diagnostics::Diag;
use super::model::*;
use crate::events::{EventPattern, closest};

type Val<'i> = Spanned<DeValue<'i>>;

/// The longest timeout a handler may have: a Lambda invocation cannot run longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The longest a retry schedule may last in all, with the most jitter (+10 %)
/// added: SQS keeps a message at most 14 days, counted from when it was sent.
pub const MAX_RETRY_TOTAL: Duration = Duration::from_secs(13 * 24 * 3600);

const ROOT_KEYS: &[&str] = &["version", "defaults", "handler"];
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
const HTTP_KEYS: &[&str] = &["url", "headers", "secret", "timeout"];
const SCRIPT_KEYS: &[&str] = &["command", "timeout", "env"];
const SECRET_KEYS: &[&str] = &["env"];

/// Headers the service sets itself; a handler cannot override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "traceparent",
    "tracestate",
];

/// Headers whose value is a credential: a literal value there is a secret in the file.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
];

/// Options for checks that depend on where the file is.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions<'a> {
    /// When set, script commands with a relative path must exist below it.
    pub scripts_dir: Option<&'a Path>,
}

pub(crate) fn parse(src: &str, opts: &ParseOptions<'_>) -> Result<Config, Vec<Diag>> {
    let mut cx = Cx {
        diags: Vec::new(),
        opts,
        src,
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

struct Cx<'o> {
    diags: Vec<Diag>,
    opts: &'o ParseOptions<'o>,
    /// The file, to place a problem inside a string value (a `when` condition).
    src: &'o str,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cx<'_> {
    fn push(&mut self, d: Diag) {
        self.diags.push(d);
    }

    /// Reports every key of `table` that is not in `allowed`, with the nearest allowed key.
    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let help = match closest(name, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? {what} accepts {}", one_of(allowed)),
                None => format!("{what} accepts {}", one_of(allowed)),
            };
            self.push(
                Diag::new(key.span(), format!("unknown key `{name}` in {what}"))
                    .label("not a known key")
                    .help(help),
            );
        }
    }

    fn string<'a>(&mut self, key: &str, v: &'a Val<'_>) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a string"))
                        .label(format!("this is {}", type_name(other))),
                );
                None
            }
        }
    }

    fn integer(&mut self, key: &str, v: &Val<'_>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.push(Diag::new(v.span(), format!("`{key}` is out of range")));
                    None
                }
            },
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be an integer"))
                        .label(format!("this is {}", type_name(other))),
                );
                None
            }
        }
    }

    fn table<'a, 'i>(&mut self, key: &str, v: &'a Val<'i>, help: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a table"))
                        .label(format!("this is {}", type_name(other)))
                        .help(help),
                );
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: &Val<'_>, max: Duration) -> Option<Duration> {
        const HOW: &str =
            "write a duration as a string with a unit, e.g. \"500ms\", \"5s\", \"2m\"";
        let DeValue::String(s) = v.get_ref() else {
            self.push(
                Diag::new(v.span(), format!("`{key}` must be a duration string"))
                    .label(format!("this is {}", type_name(v.get_ref())))
                    .help(HOW),
            );
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be longer than zero"))
                        .label("zero")
                        .help(HOW),
                );
                None
            }
            Ok(d) if d > max => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` is too long"))
                        .label(format!("longer than {}", humantime::format_duration(max)))
                        .help(format!(
                            "the longest allowed here is {}",
                            humantime::format_duration(max)
                        )),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` is not a valid duration: {e}"))
                        .label("not a duration")
                        .help(HOW),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: &Val<'_>,
        names: &[&str],
        from: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(key, v)?;
        if let Some(t) = from(s) {
            return Some(t);
        }
        let help = match closest(s, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? allowed: {}", one_of(names)),
            None => format!("allowed: {}", one_of(names)),
        };
        self.push(
            Diag::new(v.span(), format!("invalid {key} `{s}`"))
                .label(format!("not a valid {key}"))
                .help(help),
        );
        None
    }

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
        let handlers = self.handlers(doc);
        Some(Config {
            version: version?,
            defaults: defaults?,
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

    /// Reads an optional key: `Ok(None)` when absent, `Err(())` when present
    /// but invalid (the problem is already reported).
    fn optional<'a, 'i, T>(
        &mut self,
        t: &'a DeTable<'i>,
        key: &str,
        read: impl FnOnce(&mut Self, &'a Val<'i>) -> Option<T>,
    ) -> Result<Option<T>, ()> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => read(self, v).map(Some).ok_or(()),
        }
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

    fn handler(&mut self, t: &DeTable<'_>, span: Range<usize>) -> Option<(Handler, Range<usize>)> {
        self.unknown_keys(t, HANDLER_KEYS, "a handler");
        let id = self.required(t, "id", &span, "id = <a number never used before>");
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
        let name = self
            .required(t, "name", &span, "name = \"Softswitch: create client\"")
            .and_then(|v| {
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
            });
        let events = self
            .required(t, "event", &span, "event = \"clients.create\"")
            .and_then(|v| self.events(v));
        let priority = self
            .required(
                t,
                "priority",
                &span,
                "priority = 1   # 1 runs first; ties go by id",
            )
            .and_then(|v| {
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
            });
        let status = match t.get("status") {
            None => Some(Status::Enabled),
            Some(v) => self.choice("status", v, Status::NAMES, Status::from_name),
        };
        let phase_val = t.get("phase");
        let phase = match phase_val {
            None => Some(Phase::After),
            Some(v) => self.choice("phase", v, Phase::NAMES, Phase::from_name),
        };
        let mut ok = true;
        let mut on_error = OnError::default();
        let mut on_failure = OnFailure::default();
        let mut retry = None;
        if let Some(v) = t.get("on_error") {
            match self.choice("on_error", v, OnError::NAMES, OnError::from_name) {
                Some(x) => on_error = x,
                None => ok = false,
            }
            if phase == Some(Phase::After) {
                ok = false;
                self.push(
                    Diag::new(v.span(), "`on_error` applies to `before` handlers only")
                        .label("ignored in the after phase")
                        .help("an after handler uses `on_failure = \"block\"` (retry from here) or `\"skip\"`; or set `phase = \"before\"`"),
                );
            }
        }
        if let Some(v) = t.get("on_failure") {
            match self.choice("on_failure", v, OnFailure::NAMES, OnFailure::from_name) {
                Some(x) => on_failure = x,
                None => ok = false,
            }
            if phase == Some(Phase::Before) {
                ok = false;
                self.push(
                    Diag::new(v.span(), "`on_failure` applies to `after` handlers only")
                        .label("ignored in the before phase")
                        .help("a before handler uses `on_error = \"forbid\"` (fail closed) or `\"allow\"` (fail open)"),
                );
            }
        }
        if let Some(v) = t.get("retry") {
            retry = self.retry(v);
            ok &= retry.is_some();
            if phase == Some(Phase::Before) {
                ok = false;
                self.push(
                    Diag::new(v.span(), "`retry` applies to `after` handlers only")
                        .label("a before handler is asked once")
                        .help(
                            "remove `retry`; a before handler's failure resolves by its `on_error`",
                        ),
                );
            }
        }
        let mut pause_after = None;
        if let Some(v) = t.get("pause_after") {
            pause_after = self.pause_after(v);
            ok &= pause_after.is_some();
            if phase == Some(Phase::Before) {
                ok = false;
                self.push(
                    Diag::new(v.span(), "`pause_after` applies to `after` handlers only")
                        .label("a before handler is never paused")
                        .help("remove `pause_after`; a before handler's failure resolves by its `on_error`"),
                );
            }
        }
        let when = match t.get("when") {
            None => None,
            Some(v) => {
                let c = self.condition(v);
                ok &= c.is_some();
                c
            }
        };
        let target = self.target(t, &span);
        Some((
            Handler {
                id: id?,
                name: name?,
                events: events?,
                priority: priority?,
                status: status?,
                phase: phase?,
                on_error,
                on_failure,
                retry,
                pause_after,
                when,
                target: target?,
            },
            id_span,
        ))
        .filter(|_| ok)
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
    fn condition(&mut self, v: &Val<'_>) -> Option<Condition> {
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
                let problems = c.check();
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

    fn target(&mut self, t: &DeTable<'_>, span: &Range<usize>) -> Option<Target> {
        match (t.get("http"), t.get("script")) {
            (Some(h), Some(s)) => {
                let (first, second) = if h.span().start <= s.span().start {
                    (h, s)
                } else {
                    (s, h)
                };
                self.push(
                    Diag::new(
                        second.span(),
                        "a handler has exactly one target, found both `http` and `script`",
                    )
                    .label("second target")
                    .related(first.span(), "first target")
                    .help("keep one; to call an endpoint and run a script, define two handlers"),
                );
                // Still check both, so their own mistakes are reported now.
                self.http(h);
                self.script(s);
                None
            }
            (Some(h), None) => self.http(h).map(Target::Http),
            (None, Some(s)) => self.script(s).map(Target::Script),
            (None, None) => {
                self.push(
                    Diag::new(span.clone(), "handler has no target")
                        .label("neither `http` nor `script`")
                        .help("add `http = { url = \"https://…\" }` or `script = { command = [\"scripts/…\"] }`"),
                );
                None
            }
        }
    }

    fn http(&mut self, v: &Val<'_>) -> Option<HttpTarget> {
        let t = self.table(
            "http",
            v,
            "write `http = { url = \"https://crm.example.com/hooks\" }`",
        )?;
        self.unknown_keys(t, HTTP_KEYS, "an http target");
        let url = match t.get("url") {
            None => {
                self.push(
                    Diag::new(v.span(), "http target is missing `url`")
                        .label("no url")
                        .help("add `url = \"https://…\"`"),
                );
                None
            }
            Some(u) => self.url(u),
        };
        let mut ok = true;
        let mut headers = Vec::new();
        if let Some(hv) = t.get("headers") {
            match self.table(
                "headers",
                hv,
                "write `headers = { \"X-Tenant\" = \"acme\" }`",
            ) {
                None => ok = false,
                Some(ht) => {
                    for (k, val) in ht.iter() {
                        match self.header(k, val) {
                            Some(h) => headers.push(h),
                            None => ok = false,
                        }
                    }
                }
            }
        }
        let secret = self.optional(t, "secret", |cx, v| cx.secret_ref("secret", v));
        let timeout = self.optional(t, "timeout", |cx, v| cx.duration("timeout", v, MAX_TIMEOUT));
        let (Ok(secret), Ok(timeout), Some(url), true) = (secret, timeout, url, ok) else {
            return None;
        };
        Some(HttpTarget {
            url,
            headers,
            secret,
            timeout,
        })
    }

    fn url(&mut self, v: &Val<'_>) -> Option<Url> {
        let s = self.string("url", v)?;
        let url = match Url::parse(s) {
            Ok(u) => u,
            Err(e) => {
                self.push(
                    Diag::new(v.span(), format!("invalid URL: {e}"))
                        .label("not a URL")
                        .help("write an absolute URL, e.g. \"https://crm.example.com/hooks\""),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.push(
                Diag::new(v.span(), "the URL carries credentials")
                    .label("user or password in the URL")
                    .help("never write secrets in the file: send them as a header that references a secret, e.g. `headers = { Authorization = { env = \"CRM_TOKEN\" } }`"),
            );
            return None;
        }
        match url.scheme() {
            "https" => Some(url),
            "http" if is_loopback_host(&url) => Some(url),
            "http" => {
                self.push(
                    Diag::new(v.span(), "plain http is allowed only for loopback hosts")
                        .label("not https")
                        .help("use https:// (http:// is accepted for 127.0.0.1, [::1] and localhost, for local development)"),
                );
                None
            }
            other => {
                self.push(
                    Diag::new(v.span(), format!("unsupported URL scheme `{other}`"))
                        .label("not https")
                        .help("handlers are called over https://"),
                );
                None
            }
        }
    }

    fn header(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        v: &Val<'_>,
    ) -> Option<(String, ValueSource)> {
        let name: &str = key.get_ref();
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.push(
                Diag::new(key.span(), format!("`{name}` is not a valid header name"))
                    .label("invalid header name")
                    .help("header names are letters, digits and `-`, e.g. \"X-Tenant\""),
            );
            return None;
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            self.push(
                Diag::new(key.span(), format!("header `{name}` is set by the service"))
                    .label("cannot be overridden")
                    .help(format!(
                        "remove it; the service sets {}",
                        one_of(RESERVED_HEADERS)
                    )),
            );
            return None;
        }
        match v.get_ref() {
            DeValue::String(s)
                if CREDENTIAL_HEADERS.contains(&lower.as_str()) || looks_secret(name) =>
            {
                let _ = s;
                self.push(
                    Diag::new(v.span(), format!("literal secret in header `{name}`"))
                        .label("a credential written in the file")
                        .help(format!(
                            "reference it instead: `{name} = {{ env = \"{}\" }}`, and let the deployment fill that variable from the secret store",
                            suggested_env_name(name)
                        )),
                );
                None
            }
            DeValue::String(s) => Some((name.to_owned(), ValueSource::Literal(s.to_string()))),
            DeValue::Table(_) => self
                .secret_ref(name, v)
                .map(|r| (name.to_owned(), ValueSource::Secret(r))),
            other => {
                self.push(
                    Diag::new(
                        v.span(),
                        format!("header `{name}` must be a string or a secret reference"),
                    )
                    .label(format!("this is {}", type_name(other)))
                    .help(format!(
                        "write `{name} = \"value\"` or `{name} = {{ env = \"VAR\" }}`"
                    )),
                );
                None
            }
        }
    }

    fn secret_ref(&mut self, key: &str, v: &Val<'_>) -> Option<SecretRef> {
        let t = match v.get_ref() {
            DeValue::Table(t) => t,
            DeValue::String(_) => {
                self.push(
                    Diag::new(v.span(), format!("literal secret in `{key}`"))
                        .label("secrets are never written in the file")
                        .help(format!(
                            "reference an environment variable that the deployment fills from the secret store: `{key} = {{ env = \"{}\" }}`",
                            suggested_env_name(key)
                        )),
                );
                return None;
            }
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a secret reference"))
                        .label(format!("this is {}", type_name(other)))
                        .help(format!("write `{key} = {{ env = \"VAR\" }}`")),
                );
                return None;
            }
        };
        self.unknown_keys(t, SECRET_KEYS, "a secret reference");
        let Some(ev) = t.get("env") else {
            self.push(
                Diag::new(v.span(), format!("`{key}` names no source"))
                    .label("missing `env`")
                    .help(format!("write `{key} = {{ env = \"VAR\" }}`")),
            );
            return None;
        };
        let name = self.string("env", ev)?;
        if !is_env_name(name) {
            self.push(
                Diag::new(
                    ev.span(),
                    format!("`{name}` is not an environment variable name"),
                )
                .label("invalid name")
                .help("use letters, digits and `_`, not starting with a digit, e.g. \"CRM_TOKEN\""),
            );
            return None;
        }
        if super::model::is_reserved_secret(name) {
            self.push(
                Diag::new(ev.span(), format!("`{name}` is not a handler's secret"))
                    .label("reserved name")
                    .help("names starting with HOOKS_ or AWS_ are the deployment's own settings and credentials (billing's tokens among them) and are never sent to a handler; give the handler's secret a name of its own, e.g. \"CRM_TOKEN\""),
            );
            return None;
        }
        Some(SecretRef::Env(name.to_owned()))
    }

    fn script(&mut self, v: &Val<'_>) -> Option<ScriptTarget> {
        let t = self.table(
            "script",
            v,
            "write `script = { command = [\"scripts/crm-audit.sh\"] }`",
        )?;
        self.unknown_keys(t, SCRIPT_KEYS, "a script target");
        let command = match t.get("command") {
            None => {
                self.push(
                    Diag::new(v.span(), "script target is missing `command`")
                        .label("no command")
                        .help("add `command = [\"scripts/crm-audit.sh\", \"--flag\"]`"),
                );
                None
            }
            Some(cv) => self.command(cv),
        };
        let mut ok = true;
        let timeout = self.optional(t, "timeout", |cx, v| cx.duration("timeout", v, MAX_TIMEOUT));
        let mut env = BTreeMap::new();
        if let Some(ev) = t.get("env") {
            match self.table("env", ev, "write `env = { MODE = \"audit\" }`") {
                None => ok = false,
                Some(et) => {
                    for (k, val) in et.iter() {
                        let name: &str = k.get_ref();
                        if !is_env_name(name) {
                            self.push(
                                Diag::new(
                                    k.span(),
                                    format!("`{name}` is not an environment variable name"),
                                )
                                .label("invalid name")
                                .help("use letters, digits and `_`, not starting with a digit"),
                            );
                            ok = false;
                            continue;
                        }
                        if name == "PATH" || name.starts_with("LD_") {
                            self.push(
                                Diag::new(k.span(), format!("`{name}` cannot be set for a script"))
                                    .label("reserved")
                                    .help("scripts get a fixed PATH (/usr/local/bin:/usr/bin:/bin); ship what they need in the scripts folder"),
                            );
                            ok = false;
                            continue;
                        }
                        let source = match val.get_ref() {
                            DeValue::String(_) if looks_secret(name) => {
                                self.push(
                                    Diag::new(val.span(), format!("literal secret in `{name}`"))
                                        .label("the name says this is a secret")
                                        .help(format!(
                                            "reference it instead: `{name} = {{ env = \"{name}\" }}`; if it is no secret, choose a name without TOKEN, SECRET, PASSWORD or KEY"
                                        )),
                                );
                                None
                            }
                            DeValue::String(s) => Some(ValueSource::Literal(s.to_string())),
                            _ => self.secret_ref(name, val).map(ValueSource::Secret),
                        };
                        match source {
                            Some(s) => {
                                env.insert(name.to_owned(), s);
                            }
                            None => ok = false,
                        }
                    }
                }
            }
        }
        let (Some(command), Ok(timeout), true) = (command, timeout, ok) else {
            return None;
        };
        Some(ScriptTarget {
            command,
            timeout,
            env,
        })
    }

    fn command(&mut self, v: &Val<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            let help = match v.get_ref() {
                DeValue::String(s) => format!(
                    "write the program and its arguments as a list: `command = [{}]`",
                    s.split_whitespace()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "write `command = [\"scripts/crm-audit.sh\"]`".to_owned(),
            };
            self.push(
                Diag::new(v.span(), "`command` must be a list of strings")
                    .label(format!("this is {}", type_name(v.get_ref())))
                    .help(help),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            out.push(self.string("command", item).map(str::to_owned));
        }
        let out: Vec<String> = out.into_iter().collect::<Option<_>>()?;
        let Some(program) = out.first() else {
            self.push(
                Diag::new(v.span(), "`command` is empty")
                    .label("no program")
                    .help("name the program first: `command = [\"scripts/crm-audit.sh\"]`"),
            );
            return None;
        };
        if program.trim().is_empty() {
            self.push(
                Diag::new(v.span(), "the program name is empty")
                    .label("empty program")
                    .help("name the program first: `command = [\"scripts/crm-audit.sh\"]`"),
            );
            return None;
        }
        let path = Path::new(program);
        let inside = path.is_relative()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || !program.contains('/') {
            self.push(
                Diag::new(v.span(), format!("`{program}` is not a script of the bundle"))
                    .label("not a path inside the scripts folder")
                    .help("a script handler runs a file shipped with the bundle: write its path relative to the scripts folder, e.g. `scripts/crm-audit.sh` (start it with a #! line to choose its interpreter)"),
            );
            return None;
        }
        if let Some(dir) = self.opts.scripts_dir {
            let file = dir.join(path);
            // Links are followed: the file must be inside the folder.
            let escapes = match (std::fs::canonicalize(&file), std::fs::canonicalize(dir)) {
                (Ok(real), Ok(dir)) => !real.starts_with(dir),
                _ => false,
            };
            let problem = match std::fs::metadata(&file) {
                _ if escapes => Some((
                    "leads outside the scripts folder (through a link)",
                    "outside the scripts folder",
                )),
                Err(_) => Some(("not found", "no such file")),
                Ok(m) if !m.is_file() => Some(("is not a file", "not a file")),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                    Some(("is not executable", "not executable"))
                }
                Ok(_) => None,
            };
            if let Some((what, label)) = problem {
                self.push(
                    Diag::new(v.span(), format!("script `{program}` {what}"))
                        .label(label)
                        .help(format!(
                            "scripts are resolved against {}; add the file to the repository with its executable bit (`git update-index --chmod=+x {program}`) or fix the path",
                            dir.display()
                        )),
                );
                return None;
            }
        }
        Some(out)
    }
}

/// `http://` is accepted for these hosts only (local development).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether a header or variable name says its value is a credential.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "APIKEY",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper == "KEY"
        || upper.ends_with("_KEY")
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn suggested_env_name(key: &str) -> String {
    let base: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    match base.as_str() {
        "SECRET" => "HANDLER_SECRET".to_owned(),
        "AUTHORIZATION" => "HANDLER_TOKEN".to_owned(),
        _ => base,
    }
}
