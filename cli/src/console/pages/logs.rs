//! `/logs`: the execution log, one call a row, newest first, filtered and
//! paged by the time of the last row shown.

use std::sync::Arc;

use axum::extract::{Query, State};
use hooks_core::chain::Outcome;
use hooks_core::events::Event;
use hooks_core::records::{LogEntry, LogQuery};

use super::common::{Console, Page, Reads, render, store_failed};
use super::query::{PAGE_ROWS, command, parse_opt, parse_time, query_string};
use crate::console::views::{CallView, LogFilters, LogsPage};
use hooks_core::store::Listings;

/// The store's query of the filters: a page of the calls that pass. The
/// filters are read in the order the form shows them; one that does not
/// parse is ignored, with a note in `errors`.
fn query_of(f: &LogFilters, errors: &mut Vec<String>) -> LogQuery {
    LogQuery {
        handler: parse_opt(&f.handler, "handler", errors),
        event: parse_opt(&f.event, "event", errors),
        outcome: parse_outcome(&f.outcome, errors),
        status_class: parse_status_class(&f.status, errors),
        since: parse_time(&f.since, "since", errors),
        until: parse_time(&f.until, "until", errors),
        limit: PAGE_ROWS,
        ..LogQuery::default()
    }
}

pub(crate) async fn logs<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Query(f): Query<LogFilters>,
) -> Page {
    let mut chrome = c.chrome("logs");
    let query = query_of(&f, &mut chrome.errors);
    let calls = c
        .logs
        .calls(&query)
        .await
        .map_err(|e| store_failed(&c, &e))?;
    render(&LogsPage {
        chrome,
        event_options: Event::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
        outcome_options: Outcome::NAMES.iter().map(|s| (*s).to_owned()).collect(),
        status_options: status_options(),
        calls: calls.iter().map(CallView::from).collect(),
        newest_link: newest_link(&f),
        older_link: older_link(&f, &calls),
        command: cli_command(&f),
        f,
    })
}

/// An outcome filter's value: `None` when empty; when it names no outcome,
/// a message.
fn parse_outcome(v: &str, errors: &mut Vec<String>) -> Option<Outcome> {
    if v.is_empty() {
        return None;
    }
    let o: Option<Outcome> = serde_json::from_value(serde_json::Value::String(v.to_owned())).ok();
    if o.is_none() {
        errors.push(format!(
            "The outcome filter `{v}` is ignored: one of {}",
            Outcome::NAMES.join(", ")
        ));
    }
    o
}

/// A status filter's value, as an HTTP status class: `None` when empty;
/// when it names no class, a message.
fn parse_status_class(v: &str, errors: &mut Vec<String>) -> Option<u16> {
    if v.is_empty() {
        return None;
    }
    let class = http_class(v);
    if class.is_none() {
        errors.push(format!(
            "The status filter `{v}` is ignored: 2xx, 3xx, 4xx, 5xx or none"
        ));
    }
    class
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

/// The status filter's choices: (value, label).
fn status_options() -> Vec<(String, String)> {
    ["2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|s| ((*s).to_owned(), (*s).to_owned()))
        .chain([("none".to_owned(), "no response".to_owned())])
        .collect()
}

/// This page's filters, with the calls shown starting before `until`.
fn link(f: &LogFilters, until: &str) -> String {
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
}

/// The next page, from the last call shown; none when this page is not full.
fn older_link(f: &LogFilters, calls: &[LogEntry]) -> String {
    match calls.last() {
        Some(last) if calls.len() >= PAGE_ROWS => link(
            f,
            &last
                .record
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ),
        _ => String::new(),
    }
}

/// Back to the newest calls; none when this page shows them.
fn newest_link(f: &LogFilters) -> String {
    if f.until.is_empty() {
        String::new()
    } else {
        link(f, "")
    }
}

/// The same list from the command line, when its filters allow it.
fn cli_command(f: &LogFilters) -> String {
    if f.event.is_empty() && f.status.is_empty() && f.until.is_empty() {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_named_as_the_filter_shows_them() {
        assert_eq!(http_class("5xx"), Some(5));
        assert_eq!(http_class("none"), Some(0));
        assert_eq!(http_class("9xx"), None);
        assert_eq!(http_class("abc"), None);
    }
}
