//! The pages' templates (`cli/templates/console/`) and what each shows.
//! Askama escapes every `{{ value }}` for HTML; only the server-drawn SVG
//! charts are inserted as markup (`|safe`), and they escape their own text.

use askama::Template;
use chrono::{DateTime, Utc};
use hooks_core::chain::FieldChange;
use hooks_core::records::LogEntry;

use super::charts::outcome_class;

/// The frame around every page.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub nav: &'static str,
    pub env: String,
    /// Parts of the page that could not be read (shown above it).
    pub errors: Vec<String>,
}

/// A time as the pages show it (UTC).
pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// How long ago `t` was, roughly.
pub(crate) fn ago(t: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - *t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// The colour class of an event status.
pub(crate) fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "ok",
        "dead" => "bad",
        "failed" | "queued" => "warn",
        "forbidden" => "forbid",
        _ => "skip",
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ChangeView {
    pub path: String,
    pub before: String,
    pub after: String,
}

impl From<&FieldChange> for ChangeView {
    fn from(c: &FieldChange) -> Self {
        ChangeView {
            path: c.path.clone(),
            before: c.before.clone().unwrap_or_else(|| "(absent)".into()),
            after: c.after.clone().unwrap_or_else(|| "(absent)".into()),
        }
    }
}

/// One call, in a table of calls.
#[derive(Debug, Clone)]
pub(crate) struct CallView {
    pub time: String,
    pub event_id: String,
    pub event: String,
    pub handler_id: u32,
    pub handler: String,
    pub phase: String,
    pub attempt: u32,
    pub outcome: String,
    pub class: &'static str,
    pub status: String,
    pub duration: String,
    pub revision: u64,
    pub error: String,
    pub response: String,
    pub changes: Vec<ChangeView>,
    pub span_id: String,
    pub has_details: bool,
}

impl From<&LogEntry> for CallView {
    fn from(e: &LogEntry) -> Self {
        let r = &e.record;
        let error = r
            .error
            .clone()
            .or_else(|| r.reason.as_ref().map(|why| format!("forbade: {why}")))
            .unwrap_or_default();
        let response = r.response.clone().unwrap_or_default();
        let changes: Vec<ChangeView> = r.changes.iter().map(ChangeView::from).collect();
        CallView {
            time: r.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            event_id: r.event_id.clone(),
            event: r.event.to_string(),
            handler_id: r.handler_id,
            handler: r.handler_name.clone(),
            phase: r.phase.to_string(),
            attempt: r.attempt,
            outcome: r.outcome_label(),
            class: if r.shadow {
                "shadow"
            } else {
                outcome_class(r.outcome.as_str())
            },
            status: r.status_code.map_or("-".into(), |s| s.to_string()),
            duration: r.duration_ms.to_string(),
            revision: e.revision,
            has_details: !error.is_empty() || !response.is_empty() || !changes.is_empty(),
            error,
            response,
            changes,
            span_id: r.span_id.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HandlerRow {
    pub id: u32,
    pub priority: u32,
    pub name: String,
    pub events: String,
    pub phase: String,
    pub kind: String,
    pub location: String,
    pub status: String,
    pub icon: &'static str,
    /// Why the handler is paused (empty when it is not).
    pub paused: String,
    pub calls: u64,
    pub failure_rate: String,
    pub durations: String,
    pub last_error: String,
    pub last_error_at: String,
    pub spark: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct HandlerFilters {
    pub event: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub phase: String,
}

#[derive(Template)]
#[template(path = "console/handlers.html")]
pub(crate) struct HandlersPage {
    pub chrome: Chrome,
    pub revision: String,
    pub window: String,
    pub filters: HandlerFilters,
    pub event_options: Vec<String>,
    pub rows: Vec<HandlerRow>,
    pub ordered: bool,
    pub legend: Vec<(String, &'static str)>,
    pub chart_hours: String,
    pub chart_durations: String,
    pub list_command: String,
}

#[derive(Template)]
#[template(path = "console/handler.html")]
pub(crate) struct HandlerPage {
    pub chrome: Chrome,
    pub id: u32,
    pub name: String,
    pub status: String,
    pub phase: String,
    pub kind: String,
    pub location: String,
    pub window: String,
    pub health_calls: u64,
    pub health_failures: String,
    pub health_durations: String,
    pub spark: String,
    pub introduced: String,
    pub definition: String,
    pub calls: Vec<CallView>,
    pub log_link: String,
    pub log_command: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct LogFilters {
    pub handler: String,
    pub event: String,
    pub outcome: String,
    pub status: String,
    pub since: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "console/logs.html")]
pub(crate) struct LogsPage {
    pub chrome: Chrome,
    pub f: LogFilters,
    pub event_options: Vec<String>,
    pub outcome_options: Vec<String>,
    pub status_options: Vec<(String, String)>,
    pub calls: Vec<CallView>,
    pub newest_link: String,
    pub older_link: String,
    pub command: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct EventFilters {
    pub q: String,
    pub key: String,
    pub status: String,
    pub event: String,
    pub since: String,
    pub after: String,
}

#[derive(Debug, Clone)]
pub(crate) struct EventRowView {
    pub time: String,
    pub id: String,
    pub event: String,
    pub key: String,
    pub key_q: String,
    pub status: String,
    pub class: &'static str,
}

#[derive(Template)]
#[template(path = "console/events.html")]
pub(crate) struct EventsPage {
    pub chrome: Chrome,
    pub f: EventFilters,
    pub status_options: Vec<String>,
    pub event_options: Vec<String>,
    pub rows: Vec<EventRowView>,
    pub newest_link: String,
    pub older_link: String,
    pub replay_dead: String,
    pub command: String,
}

#[derive(Template)]
#[template(path = "console/event.html")]
pub(crate) struct EventPage {
    pub chrome: Chrome,
    pub id: String,
    pub event: String,
    pub status: String,
    pub status_class: &'static str,
    pub key: String,
    pub key_q: String,
    pub trace: String,
    pub received: String,
    pub occurred: String,
    pub runs: u32,
    pub revision: String,
    pub next_attempt: String,
    pub last_error: String,
    pub decision: String,
    pub trimmed: u32,
    pub actions: Vec<String>,
    pub calls: Vec<CallView>,
    pub data_sent: String,
    pub data_final: String,
    pub neighbours: Vec<EventRowView>,
}

#[derive(Debug, Clone)]
pub(crate) struct RevisionRow {
    pub number: u64,
    pub when: String,
    pub who: String,
    pub commit: String,
    pub hash: String,
    pub file: String,
    pub handlers: u32,
    pub summary: String,
    pub live: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PlanItem {
    pub kind: &'static str,
    pub sign: &'static str,
    pub title: String,
    pub fields: Vec<ChangeView>,
}

#[derive(Debug, Clone)]
pub(crate) struct SchemaRow {
    pub event: String,
    pub description: String,
    /// Pretty JSON; empty without a schema.
    pub schema: String,
    pub example: String,
}

#[derive(Template)]
#[template(path = "console/schemas.html")]
pub(crate) struct SchemasPage {
    pub chrome: Chrome,
    pub revision: u64,
    pub dir: String,
    pub strict: bool,
    pub rows: Vec<SchemaRow>,
}

#[derive(Template)]
#[template(path = "console/revisions.html")]
pub(crate) struct RevisionsPage {
    pub chrome: Chrome,
    pub rows: Vec<RevisionRow>,
    pub selected: u64,
    pub changes: Vec<PlanItem>,
    pub rollback: String,
}

#[derive(Debug, Clone)]
pub(crate) struct DeadRow {
    pub time: String,
    pub id: String,
    pub event: String,
    pub key: String,
    pub replay: String,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
pub(crate) struct QueuePage {
    pub chrome: Chrome,
    pub main: hooks_core::queue::QueueCounts,
    pub dead: hooks_core::queue::QueueCounts,
    pub oldest_waiting: String,
    pub oldest_dead: String,
    pub since: String,
    pub rows: Vec<DeadRow>,
    pub replay_all: String,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub(crate) struct ErrorPage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
}
