//! Each page: what it reads (the store's own queries, as the CLI's), and
//! the view it fills.

use std::str::FromStr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use hooks_core::chain::Outcome;
use hooks_core::config::plan::{HandlerChange, diff};
use hooks_core::config::{Handler, Phase, Status, TargetKind};
use hooks_core::events::{Event, EventPattern, Group};
use hooks_core::records::{EventRecord, EventStatus, LogEntry, LogQuery};
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::events::time_key;
use hooks_core::store::logs::{LogStore, calls_of};
use hooks_core::store::recent::{EventQuery, EventRow, STATUS_FILTERS, statuses_named};
use hooks_core::store::{ConfigStore, Revision, StoreError, short_hash};
use hooks_core::wiring::Wiring;

use super::charts::{self, outcome_class};
use super::health::{self, HOURS, Health};
use super::views::*;
use crate::commands::list::matches_event;
use crate::commands::logs::parse_since;

/// The calls the handlers' health is drawn from: the newest of the last
/// 24 hours, at most this many (a page stays one bounded read).
pub(crate) const HEALTH_CALLS: usize = 2000;

/// The calls a handler's page lists.
const HANDLER_CALLS: usize = 25;

/// Rows of a page of the execution log or of the events.
const PAGE_ROWS: usize = 50;

/// Shared by every request: the stores (the SDK clients inside are cheap to
/// clone and pool their connections).
#[derive(Debug)]
pub(crate) struct Console {
    wiring: Wiring,
    config: DynamoConfigStore,
    logs: LogStore,
    events: EventStore,
    env_label: String,
}

impl Console {
    pub(crate) fn new(wiring: Wiring, env_label: String) -> Console {
        Console {
            config: wiring.config_store(),
            logs: wiring.log_store(),
            events: wiring.event_store(),
            wiring,
            env_label,
        }
    }

    fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome {
            nav,
            env: self.env_label.clone(),
            errors: Vec::new(),
        }
    }
}

/// A page that could not be shown: the error page, answered instead.
#[derive(Debug)]
pub(crate) struct Failed(Box<Response>);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        *self.0
    }
}

type Page = Result<Response, Failed>;

fn render(t: &impl Template) -> Page {
    match t.render() {
        Ok(html) => Ok(Html(html).into_response()),
        Err(e) => Err(Failed(Box::new(
            (StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")).into_response(),
        ))),
    }
}

fn fail(c: &Console, status: StatusCode, title: &str, message: String) -> Failed {
    let page = ErrorPage {
        chrome: c.chrome(""),
        title: title.to_owned(),
        message,
    };
    Failed(Box::new(match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (status, e.to_string()).into_response(),
    }))
}

fn store_failed(c: &Console, e: &StoreError) -> Failed {
    fail(
        c,
        StatusCode::BAD_GATEWAY,
        "AWS could not be read",
        e.to_string(),
    )
}

pub(crate) async fn not_found(State(c): State<Arc<Console>>) -> Failed {
    fail(
        &c,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.".into(),
    )
}

/// Percent-encodes a query value.
fn q(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A query string of the non-empty pairs.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", q(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A `hooks …` command with the flags whose values are set.
fn command(base: &str, flags: &[(&str, &str)]) -> String {
    let mut out = base.to_owned();
    for (flag, v) in flags.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!(" {flag} {}", sh(v)));
    }
    out
}

/// A shell word, quoted when it needs to be.
fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/=+,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn event_options() -> Vec<String> {
    Group::ALL
        .iter()
        .map(|g| format!("{}.*", g.as_str()))
        .chain(Event::ALL.iter().map(|e| e.as_str().to_owned()))
        .collect()
}

fn icon(status: Status) -> &'static str {
    match status {
        Status::Enabled => "●",
        Status::Disabled => "◐",
        Status::Archived => "▣",
        Status::Shadow => "◌",
    }
}

fn durations(h: &Health) -> String {
    match (h.p50_ms, h.p95_ms) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "-".into(),
    }
}

/// The newest calls of the last 24 hours, and a label for what they cover.
async fn recent_calls(c: &Console) -> Result<(Vec<LogEntry>, String), StoreError> {
    let calls = c
        .logs
        .query(&LogQuery {
            since: Some(Utc::now() - TimeDelta::hours(24)),
            limit: HEALTH_CALLS,
            ..LogQuery::default()
        })
        .await?;
    let window = match calls.last() {
        Some(oldest) if calls.len() >= HEALTH_CALLS => format!(
            "the latest {HEALTH_CALLS} calls (since {} UTC)",
            oldest.record.started_at.format("%H:%M")
        ),
        _ => "the last 24 h".into(),
    };
    Ok((calls, window))
}

fn hour_labels(now: DateTime<Utc>) -> Vec<String> {
    (0..HOURS)
        .map(|i| {
            (now - TimeDelta::hours((HOURS - 1 - i) as i64))
                .format("%H:00")
                .to_string()
        })
        .collect()
}

pub(crate) async fn handlers(
    State(c): State<Arc<Console>>,
    Query(f): Query<HandlerFilters>,
) -> Page {
    let mut chrome = c.chrome("handlers");
    let live = c.config.live().await.map_err(|e| store_failed(&c, &e))?;
    let (calls, window) = match recent_calls(&c).await {
        Ok(x) => x,
        Err(e) => {
            chrome
                .errors
                .push(format!("The execution log could not be read: {e}"));
            (Vec::new(), "nothing (unreadable)".into())
        }
    };
    let now = Utc::now();
    let health = health::per_handler(&calls, now);
    let states = match c.config.head_and_health().await {
        Ok((_, states)) => states,
        Err(e) => {
            chrome
                .errors
                .push(format!("The handlers' pause state could not be read: {e}"));
            Default::default()
        }
    };
    let event = parse_opt::<EventPattern>(&f.event, "event", &mut chrome.errors);
    let kind = parse_opt::<TargetKind>(&f.kind, "type", &mut chrome.errors);
    let status = parse_opt::<Status>(&f.status, "status", &mut chrome.errors);
    let phase = parse_opt::<Phase>(&f.phase, "phase", &mut chrome.errors);
    let revision = match &live {
        Some(r) => format!(
            "Live revision {} ({} handlers, synced {} UTC by {})",
            r.info.revision,
            r.info.handlers,
            time(&r.info.synced_at),
            r.info.synced_by
        ),
        None => "Nothing is live yet: `hooks sync` makes the first revision".into(),
    };
    let all: Vec<Handler> = live.map(|r| r.config.handlers).unwrap_or_default();
    let mut found: Vec<&Handler> = all
        .iter()
        .filter(|h| event.is_none_or(|e| matches_event(h, e)))
        .filter(|h| kind.is_none_or(|k| h.target.kind() == k))
        .filter(|h| status.is_none_or(|s| h.status == s))
        .filter(|h| phase.is_none_or(|p| h.phase == p))
        .collect();
    if event.is_some() {
        found.sort_by_key(|h| (h.phase != Phase::Before, h.priority, h.id));
    } else {
        found.sort_by_key(|h| h.id);
    }
    let empty = Health::default();
    let rows: Vec<HandlerRow> = found
        .iter()
        .map(|h| {
            let hh = health.get(&h.id).unwrap_or(&empty);
            HandlerRow {
                id: h.id,
                priority: h.priority,
                name: h.name.clone(),
                events: h.events_display(),
                phase: h.phase.to_string(),
                kind: h.target.kind().to_string(),
                location: h.target.summary(),
                status: h.status.to_string(),
                icon: icon(h.status),
                paused: states
                    .get(&h.id)
                    .filter(|s| s.paused.is_some())
                    .map(|s| s.describe())
                    .unwrap_or_default(),
                calls: hh.calls,
                failure_rate: hh
                    .failure_rate()
                    .map_or("-".into(), |r| format!("{r:.1} %")),
                durations: durations(hh),
                last_error: hh
                    .last_error
                    .as_ref()
                    .map(|e| e.1.clone())
                    .unwrap_or_default(),
                last_error_at: hh
                    .last_error
                    .as_ref()
                    .map(|e| format!("{} ago", ago(&e.0, now)))
                    .unwrap_or_default(),
                spark: charts::sparkline(
                    &hh.per_hour,
                    &format!("calls per hour of handler {}", h.id),
                ),
            }
        })
        .collect();
    let by_outcome = health::per_hour_by_outcome(&calls, now);
    let series: Vec<(&str, Vec<u64>)> = Outcome::NAMES
        .iter()
        .filter_map(|n| by_outcome.get(n).map(|v| (*n, v.to_vec())))
        .collect();
    let legend = series
        .iter()
        .map(|(n, _)| ((*n).to_owned(), outcome_class(n)))
        .collect();
    let chart_hours = charts::stacked_bars(&series, &hour_labels(now), "Calls per hour by outcome");
    let duration_rows: Vec<(String, Option<u64>, Option<u64>)> = all
        .iter()
        .filter_map(|h| {
            health
                .get(&h.id)
                .map(|x| (format!("{} {}", h.id, h.name), x.p50_ms, x.p95_ms))
        })
        .collect();
    let chart_durations =
        charts::duration_bars(&duration_rows, "Duration per handler, p50 and p95");
    let list_command = command(
        "hooks list --live",
        &[
            ("--event", &f.event),
            ("--type", &f.kind),
            ("--status", &f.status),
            ("--phase", &f.phase),
        ],
    );
    render(&HandlersPage {
        chrome,
        revision,
        window,
        filters: f,
        event_options: event_options(),
        rows,
        ordered: event.is_some(),
        legend,
        chart_hours,
        chart_durations,
        list_command,
    })
}

/// A filter's value: `None` when empty; when it does not parse, a message.
fn parse_opt<T: FromStr>(v: &str, name: &str, errors: &mut Vec<String>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    if v.is_empty() {
        return None;
    }
    match v.parse() {
        Ok(x) => Some(x),
        Err(e) => {
            errors.push(format!("The {name} filter `{v}` is ignored: {e}"));
            None
        }
    }
}

/// The oldest revision, among the recent ones, from which handler `id` has
/// been as it is in `live` (unchanged since).
async fn introduced(c: &Console, live: &Revision, id: u32) -> String {
    const LOOK_BACK: u64 = 25;
    let Some(current) = live.config.handlers.iter().find(|h| h.id == id) else {
        return String::new();
    };
    let current = serde_json::to_value(current).ok();
    let mut since = live.info.clone();
    let oldest = live.info.revision.saturating_sub(LOOK_BACK).max(1);
    for n in (oldest..live.info.revision).rev() {
        let Ok(Some(r)) = c.config.revision(n).await else {
            break;
        };
        let same = r
            .config
            .handlers
            .iter()
            .find(|h| h.id == id)
            .and_then(|h| serde_json::to_value(h).ok());
        if same.is_none() || same != current {
            break;
        }
        since = r.info;
    }
    let at_or_before = if since.revision == oldest && oldest > 1 {
        "at or before "
    } else {
        ""
    };
    format!(
        "In this form since {at_or_before}revision {} (synced {} UTC by {}{}).",
        since.revision,
        time(&since.synced_at),
        since.synced_by,
        since
            .git_commit
            .as_deref()
            .map(|g| format!(", commit {}", short_hash(g)))
            .unwrap_or_default()
    )
}

pub(crate) async fn handler(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Page {
    let chrome = c.chrome("handlers");
    let Ok(id) = id.parse::<u32>() else {
        return Err(fail(
            &c,
            StatusCode::NOT_FOUND,
            "No such handler",
            format!("`{id}` is not a handler id"),
        ));
    };
    let live = c
        .config
        .live()
        .await
        .map_err(|e| store_failed(&c, &e))?
        .ok_or_else(|| {
            fail(
                &c,
                StatusCode::NOT_FOUND,
                "Nothing is live",
                "`hooks sync` makes the first revision.".into(),
            )
        })?;
    let Some(h) = live.config.handlers.iter().find(|h| h.id == id) else {
        let gone = live
            .retired
            .get(&id)
            .map(|r| {
                format!(
                    "Handler {id} (\"{}\") was deleted in revision {}.",
                    r.name, r.retired_in
                )
            })
            .unwrap_or_else(|| format!("No handler has id {id} in the live revision."));
        return Err(fail(&c, StatusCode::NOT_FOUND, "No such handler", gone));
    };
    let (calls, window) = recent_calls(&c).await.map_err(|e| store_failed(&c, &e))?;
    let health = health::per_handler(&calls, Utc::now())
        .remove(&id)
        .unwrap_or_default();
    // Its latest calls: those of the health sample when it holds enough
    // (a busy handler), else its own walk through the log.
    let mut log: Vec<LogEntry> = calls
        .iter()
        .filter(|e| e.record.handler_id == id)
        .take(HANDLER_CALLS)
        .cloned()
        .collect();
    if log.len() < HANDLER_CALLS {
        log = c
            .logs
            .query(&LogQuery {
                handler: Some(id),
                limit: HANDLER_CALLS,
                ..LogQuery::default()
            })
            .await
            .map_err(|e| store_failed(&c, &e))?;
    }
    let definition = hooks_core::config::handler_source(&live.source, id)
        .map(str::to_owned)
        .or_else(|| toml::to_string(h).ok())
        .unwrap_or_default();
    render(&HandlerPage {
        chrome,
        id,
        name: h.name.clone(),
        status: h.status.to_string(),
        phase: h.phase.to_string(),
        kind: h.target.kind().to_string(),
        location: h.target.summary(),
        window,
        health_calls: health.calls,
        health_failures: health
            .failure_rate()
            .map_or("-".into(), |r| format!("{} ({r:.1} %)", health.failures)),
        health_durations: durations(&health),
        spark: charts::sparkline(&health.per_hour, "calls per hour"),
        introduced: introduced(&c, &live, id).await,
        definition,
        calls: log.iter().map(CallView::from).collect(),
        log_link: format!("/logs?handler={id}"),
        log_command: format!("hooks logs --handler {id}"),
    })
}

/// The class of an HTTP status a filter names: `2xx` … `5xx`, `none`.
fn http_class(v: &str) -> Option<u16> {
    match v {
        "none" => Some(0),
        _ => v
            .strip_suffix("xx")
            .and_then(|d| d.parse().ok())
            .filter(|d| (1..=5).contains(d)),
    }
}

fn parse_time(v: &str, name: &str, errors: &mut Vec<String>) -> Option<DateTime<Utc>> {
    if v.is_empty() {
        return None;
    }
    parse_since(v)
        .map_err(|e| errors.push(format!("The {name} filter is ignored: {e}")))
        .ok()
}

pub(crate) async fn logs(State(c): State<Arc<Console>>, Query(f): Query<LogFilters>) -> Page {
    let mut chrome = c.chrome("logs");
    let handler = parse_opt::<u32>(&f.handler, "handler", &mut chrome.errors);
    let event = parse_opt::<Event>(&f.event, "event", &mut chrome.errors);
    let outcome = if f.outcome.is_empty() {
        None
    } else {
        let o: Option<Outcome> =
            serde_json::from_value(serde_json::Value::String(f.outcome.clone())).ok();
        if o.is_none() {
            chrome.errors.push(format!(
                "The outcome filter `{}` is ignored: one of {}",
                f.outcome,
                Outcome::NAMES.join(", ")
            ));
        }
        o
    };
    let class = if f.status.is_empty() {
        None
    } else {
        http_class(&f.status)
    };
    if class.is_none() && !f.status.is_empty() {
        chrome.errors.push(format!(
            "The status filter `{}` is ignored: 2xx, 3xx, 4xx, 5xx or none",
            f.status
        ));
    }
    let since = parse_time(&f.since, "since", &mut chrome.errors);
    let until = parse_time(&f.until, "until", &mut chrome.errors);
    let calls = c
        .logs
        .query(&LogQuery {
            handler,
            event,
            outcome,
            status_class: class,
            since,
            until,
            limit: PAGE_ROWS,
            ..LogQuery::default()
        })
        .await
        .map_err(|e| store_failed(&c, &e))?;
    let link = |until: &str| {
        format!(
            "/logs{}",
            query_string(&[
                ("handler", &f.handler),
                ("event", &f.event),
                ("outcome", &f.outcome),
                ("status", &f.status),
                ("since", &f.since),
                ("until", until),
            ])
        )
    };
    let older_link = match calls.last() {
        Some(last) if calls.len() >= PAGE_ROWS => link(
            &last
                .record
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ),
        _ => String::new(),
    };
    let newest_link = if f.until.is_empty() {
        String::new()
    } else {
        link("")
    };
    // The same list from the command line, when its filters allow it.
    let command = if f.event.is_empty() && f.status.is_empty() && f.until.is_empty() {
        command(
            "hooks logs",
            &[
                ("--handler", &f.handler),
                ("--outcome", &f.outcome),
                ("--since", &f.since),
            ],
        )
    } else {
        String::new()
    };
    render(&LogsPage {
        chrome,
        event_options: Event::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
        outcome_options: Outcome::NAMES.iter().map(|s| (*s).to_owned()).collect(),
        status_options: ["2xx", "3xx", "4xx", "5xx"]
            .iter()
            .map(|s| ((*s).to_owned(), (*s).to_owned()))
            .chain([("none".to_owned(), "no response".to_owned())])
            .collect(),
        calls: calls.iter().map(CallView::from).collect(),
        f,
        newest_link,
        older_link,
        command,
    })
}

fn row_view(r: &EventRow) -> EventRowView {
    EventRowView {
        time: r.updated_at().as_ref().map(time).unwrap_or_default(),
        id: r.id.clone(),
        event: r.event.clone(),
        key: r.key.clone(),
        key_q: q(&r.key),
        status: r.status.clone(),
        class: status_class(&r.status),
    }
}

pub(crate) async fn events(State(c): State<Arc<Console>>, Query(f): Query<EventFilters>) -> Page {
    let mut chrome = c.chrome("events");
    let id = f.q.trim();
    if !id.is_empty() && !hooks_core::ingest::valid_stored_id(id) {
        chrome.errors.push(format!(
            "`{id}` is not an event id: 1 to 128 of A-Z a-z 0-9 -_.:@="
        ));
    } else if !id.is_empty() {
        match c.events.get(id).await {
            Ok(Some(_)) => return Ok(Redirect::to(&format!("/events/{}", q(id))).into_response()),
            Ok(None) => chrome.errors.push(format!("No event has the id `{id}`.")),
            Err(e) => return Err(store_failed(&c, &e)),
        }
    }
    let statuses = if f.status.is_empty() {
        Vec::new()
    } else {
        statuses_named(&f.status).unwrap_or_else(|| {
            chrome.errors.push(format!(
                "The status filter `{}` is ignored: one of {}",
                f.status,
                STATUS_FILTERS.join(", ")
            ));
            Vec::new()
        })
    };
    let event = parse_opt::<Event>(&f.event, "event", &mut chrome.errors);
    let since = parse_time(&f.since, "since", &mut chrome.errors);
    let after = f
        .after
        .split_once('|')
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
    let rows = c
        .logs
        .events(&EventQuery {
            statuses,
            event,
            key: Some(f.key.trim().to_owned()).filter(|k| !k.is_empty()),
            since,
            after,
            limit: PAGE_ROWS,
        })
        .await
        .map_err(|e| store_failed(&c, &e))?;
    let link = |after: &str| {
        format!(
            "/events{}",
            query_string(&[
                ("key", &f.key),
                ("status", &f.status),
                ("event", &f.event),
                ("since", &f.since),
                ("after", after),
            ])
        )
    };
    let older_link = match rows.last() {
        Some(r) if rows.len() >= PAGE_ROWS => link(&format!("{}|{}", r.at, r.id)),
        _ => String::new(),
    };
    let newest_link = if f.after.is_empty() {
        String::new()
    } else {
        link("")
    };
    let command = command(
        "hooks events list",
        &[
            ("--status", &f.status),
            ("--event", &f.event),
            ("--key", &f.key),
            ("--since", &f.since),
        ],
    );
    let replay_dead = format!(
        "hooks replay --dead{}",
        if f.since.is_empty() {
            String::new()
        } else {
            format!(" --since {}", sh(&f.since))
        }
    );
    render(&EventsPage {
        chrome,
        status_options: STATUS_FILTERS.iter().map(|s| (*s).to_owned()).collect(),
        event_options: Event::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
        rows: rows.iter().map(row_view).collect(),
        f,
        newest_link,
        older_link,
        replay_dead,
        command,
    })
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// What the event page offers to do, as commands.
fn actions(r: &EventRecord) -> Vec<String> {
    let id = sh(&r.event.event.id);
    let mut out = Vec::new();
    match r.status {
        EventStatus::Dead | EventStatus::Failed => {
            out.push(format!("hooks replay --event {id}"));
            out.push(format!("hooks replay --event {id} --from-start"));
        }
        EventStatus::Succeeded | EventStatus::Forbidden => {
            out.push(format!("hooks replay --event {id} --from-start"));
        }
        _ => {}
    }
    out.push(format!("hooks events show {id}"));
    out
}

fn decision(r: &EventRecord, calls: &[LogEntry]) -> String {
    if !calls.iter().any(|c| c.record.phase == Phase::Before) {
        return String::new();
    }
    match calls
        .iter()
        .find(|c| c.record.outcome == Outcome::Forbidden && !c.record.shadow)
    {
        Some(f) => format!(
            "forbid, by handler {} ({}): {}",
            f.record.handler_id,
            f.record.handler_name,
            f.record.reason.clone().unwrap_or_default()
        ),
        None if r.status == EventStatus::Forbidden => "forbid".into(),
        None => "allow".into(),
    }
}

pub(crate) async fn event(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Page {
    let mut chrome = c.chrome("events");
    if !hooks_core::ingest::valid_stored_id(&id) {
        return Err(fail(
            &c,
            StatusCode::NOT_FOUND,
            "No such event",
            format!("`{id}` is not an event id"),
        ));
    }
    let record = c
        .events
        .get(&id)
        .await
        .map_err(|e| store_failed(&c, &e))?
        .ok_or_else(|| {
            fail(
                &c,
                StatusCode::NOT_FOUND,
                "No such event",
                format!("No event has the id `{id}` (records are kept 30 days)."),
            )
        })?;
    let calls = calls_of(&record);
    let e = &record.event;
    // The key's events changed within a day of this one's arrival.
    let window_end = (e.received_at + TimeDelta::days(1)).min(Utc::now() + TimeDelta::minutes(5));
    let neighbours = match c
        .logs
        .events(&EventQuery {
            key: Some(e.key.clone()),
            since: Some(e.received_at - TimeDelta::days(1)),
            after: Some((time_key(&window_end), "~".into())),
            limit: 11,
            ..EventQuery::default()
        })
        .await
    {
        Ok(rows) => rows.iter().map(row_view).collect(),
        Err(err) => {
            chrome.errors.push(format!(
                "The other events of the key could not be read: {err}"
            ));
            Vec::new()
        }
    };
    render(&EventPage {
        chrome,
        id: e.event.id.clone(),
        event: e.event.event.to_string(),
        status: record.status.as_str().to_owned(),
        status_class: status_class(record.status.as_str()),
        key: e.key.clone(),
        key_q: q(&e.key),
        trace: e.event.trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
        received: format!("{} UTC", time(&e.received_at)),
        occurred: format!("{} UTC", time(&e.event.occurred_at)),
        runs: record.runs,
        revision: record.revision.map_or("-".into(), |r| r.to_string()),
        next_attempt: record
            .next_attempt_at
            .filter(|_| record.status == EventStatus::Failed)
            .map(|t| format!("{} UTC (in {})", time(&t), ago(&Utc::now(), t)))
            .unwrap_or_default(),
        last_error: record.last_error.clone().unwrap_or_default(),
        decision: decision(&record, &calls),
        trimmed: record.calls_trimmed,
        actions: actions(&record),
        calls: calls.iter().map(CallView::from).collect(),
        data_sent: pretty(&e.event.data),
        data_final: pretty(&record.progress.data),
        neighbours,
    })
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct RevisionFilter {
    rev: String,
}

fn plan_items(old: Option<&Revision>, new: &Revision) -> Vec<PlanItem> {
    let plan = diff(old.map(|r| &r.config), &new.config);
    let field = |f: &hooks_core::config::plan::FieldChange| ChangeView {
        path: f.field.clone(),
        before: f.old.clone().unwrap_or_else(|| "(absent)".into()),
        after: f.new.clone().unwrap_or_else(|| "(absent)".into()),
    };
    let mut items: Vec<PlanItem> = Vec::new();
    if !plan.settings.is_empty() {
        items.push(PlanItem {
            kind: "update",
            sign: "~",
            title: "settings ([defaults], version)".into(),
            fields: plan.settings.iter().map(field).collect(),
        });
    }
    for h in &plan.handlers {
        items.push(match h {
            HandlerChange::Create { id, name, summary } => PlanItem {
                kind: "create",
                sign: "+",
                title: format!("{id} \"{name}\" created: {summary}"),
                fields: Vec::new(),
            },
            HandlerChange::Update {
                id,
                name,
                now,
                fields,
                ..
            } => PlanItem {
                kind: "update",
                sign: "~",
                title: format!(
                    "{id} \"{name}\" changed{}",
                    now.map(|s| format!(" (now {s})")).unwrap_or_default()
                ),
                fields: fields.iter().map(field).collect(),
            },
            HandlerChange::Delete { id, name } => PlanItem {
                kind: "delete",
                sign: "-",
                title: format!("{id} \"{name}\" deleted"),
                fields: Vec::new(),
            },
        });
    }
    items
}

pub(crate) async fn revisions(
    State(c): State<Arc<Console>>,
    Query(f): Query<RevisionFilter>,
) -> Page {
    let mut chrome = c.chrome("revisions");
    let head = c.config.head().await.map_err(|e| store_failed(&c, &e))?;
    let live = head.as_ref().map(|h| h.revision);
    let history = c
        .config
        .history(200)
        .await
        .map_err(|e| store_failed(&c, &e))?;
    let selected = parse_opt::<u64>(&f.rev, "revision", &mut chrome.errors)
        .or(live)
        .unwrap_or(0);
    let mut changes = Vec::new();
    if selected > 0 {
        match c.config.revision(selected).await {
            Ok(Some(new)) => {
                let old = if selected > 1 {
                    c.config.revision(selected - 1).await.ok().flatten()
                } else {
                    None
                };
                changes = plan_items(old.as_ref(), &new);
            }
            Ok(None) => chrome
                .errors
                .push(format!("There is no revision {selected}.")),
            Err(e) => chrome
                .errors
                .push(format!("Revision {selected} could not be read: {e}")),
        }
    }
    let rows = history
        .iter()
        .map(|r| RevisionRow {
            number: r.revision,
            when: time(&r.synced_at),
            who: r.synced_by.clone(),
            commit: r
                .git_commit
                .as_deref()
                .map_or("-".into(), |g| short_hash(g).to_owned()),
            hash: short_hash(&r.content_hash).to_owned(),
            file: r.file.clone(),
            handlers: r.handlers,
            summary: r.summary.clone(),
            live: Some(r.revision) == live,
        })
        .collect();
    render(&RevisionsPage {
        chrome,
        rows,
        selected,
        changes,
        rollback: if selected > 0 && Some(selected) != live {
            format!("hooks rollback {selected}")
        } else {
            String::new()
        },
    })
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct QueueFilter {
    since: String,
}

pub(crate) async fn queue(State(c): State<Arc<Console>>, Query(f): Query<QueueFilter>) -> Page {
    let mut chrome = c.chrome("queue");
    let since_label = if ["1h", "24h", "7d", "30d"].contains(&f.since.as_str()) {
        f.since.clone()
    } else {
        "24h".to_owned()
    };
    let since = parse_since(&since_label).ok();
    let queue = c.wiring.queue().await.map_err(|e| store_failed(&c, &e))?;
    let [main, dead] = queue.counts().await.map_err(|e| store_failed(&c, &e))?;
    let now = Utc::now();
    let oldest = |rows: &[EventRow]| {
        rows.last()
            .and_then(EventRow::updated_at)
            .map_or("-".into(), |t| format!("{} ago", ago(&t, now)))
    };
    let waiting = c
        .logs
        .events(&EventQuery {
            statuses: vec![EventStatus::Failed],
            since,
            limit: 1000,
            ..EventQuery::default()
        })
        .await;
    let oldest_waiting = match waiting {
        Ok(rows) => oldest(&rows),
        Err(e) => {
            chrome
                .errors
                .push(format!("The waiting events could not be read: {e}"));
            "-".into()
        }
    };
    let rows = c
        .logs
        .events(&EventQuery {
            statuses: vec![EventStatus::Dead],
            since,
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .map_err(|e| store_failed(&c, &e))?;
    render(&QueuePage {
        chrome,
        main,
        dead,
        oldest_waiting,
        oldest_dead: oldest(&rows),
        replay_all: format!("hooks replay --dead --since {since_label}"),
        since: since_label,
        rows: rows
            .iter()
            .map(|r| DeadRow {
                time: r.updated_at().as_ref().map(time).unwrap_or_default(),
                id: r.id.clone(),
                event: r.event.clone(),
                key: r.key.clone(),
                replay: format!("hooks replay --event {}", sh(&r.id)),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        assert_eq!(sh("evt-1"), "evt-1");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(
            command(
                "hooks logs",
                &[("--handler", "2"), ("--outcome", ""), ("--since", "1 h")]
            ),
            "hooks logs --handler 2 --since '1 h'"
        );
    }

    #[test]
    fn status_classes_are_named_as_the_filter_shows_them() {
        assert_eq!(http_class("5xx"), Some(5));
        assert_eq!(http_class("none"), Some(0));
        assert_eq!(http_class("9xx"), None);
        assert_eq!(http_class("abc"), None);
    }
}
