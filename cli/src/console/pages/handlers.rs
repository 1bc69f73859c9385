//! `/handlers`: the live handlers, filtered as `hooks list --live` filters
//! them, each with its pause state and its health over the recent calls,
//! under two charts of those calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use chrono::{DateTime, TimeDelta, Utc};
use hooks_core::chain::Outcome;
use hooks_core::config::{Handler, HandlerId, Phase, Status, TargetKind};
use hooks_core::events::{Event, EventPattern, Group};
use hooks_core::pause::Health as PauseStates;
use hooks_core::records::LogEntry;
use hooks_core::store::{ConfigStore, Revision};

use super::common::{Console, Failed, Page, Reads, render, store_failed};
use super::query::{command, parse_opt};
use super::shared::{durations, recent_calls};
use crate::commands::list::matches_event;
use crate::console::charts::{self, outcome_class};
use crate::console::health::{self, HOURS, Health};
use crate::console::views::{HandlerFilters, HandlerRow, HandlersPage, ago, time};

/// The list's filters, parsed.
struct Wanted {
    event: Option<EventPattern>,
    kind: Option<TargetKind>,
    status: Option<Status>,
    phase: Option<Phase>,
}

impl Wanted {
    /// The filters of the query, in the order the form shows them; one that
    /// does not parse is ignored, with a note in `errors`.
    fn parse(f: &HandlerFilters, errors: &mut Vec<String>) -> Wanted {
        Wanted {
            event: parse_opt(&f.event, "event", errors),
            kind: parse_opt(&f.kind, "type", errors),
            status: parse_opt(&f.status, "status", errors),
            phase: parse_opt(&f.phase, "phase", errors),
        }
    }

    /// Whether `h` passes every filter.
    fn admits(&self, h: &Handler) -> bool {
        self.event.is_none_or(|e| matches_event(h, e))
            && self.kind.is_none_or(|k| h.target.kind() == k)
            && self.status.is_none_or(|s| h.status == s)
            && self.phase.is_none_or(|p| h.phase == p)
    }

    /// The handlers that pass: for an event, in the order they run for it
    /// (before handlers first, then by priority and id), else by id.
    fn select<'a>(&self, all: &'a [Handler]) -> Vec<&'a Handler> {
        let mut found: Vec<&Handler> = all.iter().filter(|h| self.admits(h)).collect();
        if self.event.is_some() {
            found.sort_by_key(|h| (h.phase != Phase::Before, h.priority, h.id));
        } else {
            found.sort_by_key(|h| h.id);
        }
        found
    }
}

/// What the page reads. Only the live revision is needed: without the
/// calls or the pause states the page says so and shows the rest.
struct Read {
    live: Option<Revision>,
    calls: Vec<LogEntry>,
    /// What the calls cover, in words.
    window: String,
    states: PauseStates,
    /// The reads that failed, for the top of the page.
    notes: Vec<String>,
}

/// Reads the live revision, the recent calls and the pause states.
async fn read<R: Reads>(c: &Console<R>) -> Result<Read, Failed> {
    let live = c.config.live().await.map_err(|e| store_failed(c, &e))?;
    let mut notes = Vec::new();
    let (calls, window) = match recent_calls(c).await {
        Ok(x) => x,
        Err(e) => {
            notes.push(format!("The execution log could not be read: {e}"));
            (Vec::new(), "nothing (unreadable)".into())
        }
    };
    let states = match c.config.head_and_health().await {
        Ok((_, states)) => states,
        Err(e) => {
            notes.push(format!("The handlers' pause state could not be read: {e}"));
            Default::default()
        }
    };
    Ok(Read {
        live,
        calls,
        window,
        states,
        notes,
    })
}

pub(crate) async fn handlers<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Query(f): Query<HandlerFilters>,
) -> Page {
    let mut ignored = Vec::new();
    let wanted = Wanted::parse(&f, &mut ignored);
    let Read {
        live,
        calls,
        window,
        states,
        notes,
    } = read(&c).await?;
    let mut chrome = c.chrome("handlers");
    // What could not be read first, then the filters ignored.
    chrome.errors = notes;
    chrome.errors.append(&mut ignored);
    let now = Utc::now();
    let health = health::per_handler(&calls, now);
    let revision = revision_line(live.as_ref());
    let all: Vec<Handler> = live.map(|r| r.config.handlers).unwrap_or_default();
    let empty = Health::default();
    let rows = wanted
        .select(&all)
        .into_iter()
        .map(|h| row(h, health.get(&h.id).unwrap_or(&empty), &states, now))
        .collect();
    let (legend, chart_hours) = outcome_chart(&calls, now);
    render(&HandlersPage {
        chrome,
        revision,
        window,
        event_options: event_options(),
        rows,
        ordered: wanted.event.is_some(),
        legend,
        chart_hours,
        chart_durations: duration_chart(&all, &health),
        list_command: list_command(&f),
        filters: f,
    })
}

/// The line about the live revision, or that there is none yet.
fn revision_line(live: Option<&Revision>) -> String {
    match live {
        Some(r) => format!(
            "Live revision {} ({} handlers, synced {} UTC by {})",
            r.info.revision,
            r.info.handlers,
            time(&r.info.synced_at),
            r.info.synced_by
        ),
        None => "Nothing is live yet: `hooks sync` makes the first revision".into(),
    }
}

/// The event filter's choices: every group (`clients.*`), then every event.
fn event_options() -> Vec<String> {
    Group::ALL
        .iter()
        .map(|g| format!("{}.*", g.as_str()))
        .chain(Event::ALL.iter().map(|e| e.as_str().to_owned()))
        .collect()
}

/// The sign of a handler's status in the list.
fn icon(status: Status) -> &'static str {
    match status {
        Status::Enabled => "●",
        Status::Disabled => "◐",
        Status::Archived => "▣",
        Status::Shadow => "◌",
    }
}

/// A handler's row: its definition, why it is paused if it is, and its
/// health `hh` over the recent calls.
fn row(h: &Handler, hh: &Health, states: &PauseStates, now: DateTime<Utc>) -> HandlerRow {
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
        spark: charts::sparkline(&hh.per_hour, &format!("calls per hour of handler {}", h.id)),
    }
}

/// The hours of the charts, oldest first, the last being `now`'s.
fn hour_labels(now: DateTime<Utc>) -> Vec<String> {
    (0..HOURS)
        .map(|i| {
            (now - TimeDelta::hours((HOURS - 1 - i) as i64))
                .format("%H:00")
                .to_string()
        })
        .collect()
}

/// The chart of the calls per hour by outcome, and its legend (the
/// outcomes that occur, in their usual order).
fn outcome_chart(calls: &[LogEntry], now: DateTime<Utc>) -> (Vec<(String, &'static str)>, String) {
    let by_outcome = health::per_hour_by_outcome(calls, now);
    let series: Vec<(&str, Vec<u64>)> = Outcome::NAMES
        .iter()
        .filter_map(|n| by_outcome.get(n).map(|v| (*n, v.to_vec())))
        .collect();
    let legend = series
        .iter()
        .map(|(n, _)| ((*n).to_owned(), outcome_class(n)))
        .collect();
    let chart = charts::stacked_bars(&series, &hour_labels(now), "Calls per hour by outcome");
    (legend, chart)
}

/// The chart of each called handler's p50 and p95 durations.
fn duration_chart(all: &[Handler], health: &BTreeMap<HandlerId, Health>) -> String {
    let rows: Vec<(String, Option<u64>, Option<u64>)> = all
        .iter()
        .filter_map(|h| {
            health
                .get(&h.id)
                .map(|x| (format!("{} {}", h.id, h.name), x.p50_ms, x.p95_ms))
        })
        .collect();
    charts::duration_bars(&rows, "Duration per handler, p50 and p95")
}

/// The same list from the command line.
fn list_command(f: &HandlerFilters) -> String {
    command(
        "hooks list --live",
        &[
            ("--event", &f.event),
            ("--type", &f.kind),
            ("--status", &f.status),
            ("--phase", &f.phase),
        ],
    )
}
