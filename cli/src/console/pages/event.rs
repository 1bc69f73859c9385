//! `/events/{id}`: one event: its record, the calls made for it, the data
//! sent and as the handlers left it, the key's other events around it, and
//! what an operator may do next, as commands.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};
use hooks_core::chain::Outcome;
use hooks_core::config::Phase;
use hooks_core::records::{EventRecord, EventStatus, LogEntry};
use hooks_core::store::events::time_key;
use hooks_core::store::logs::calls_of;
use hooks_core::store::recent::EventQuery;

use super::common::{Console, Failed, Page, Reads, fail, render, store_failed};
use super::query::{q, sh};
use super::shared::row_view;
use crate::console::views::{CallView, EventPage, EventRowView, ago, status_class, time};
use hooks_core::store::{EventLedger, Listings};

/// How many of the key's events around it an event's page reads at most.
const NEIGHBOURS: usize = 11;

/// The `/events/{id}` page.
pub(crate) async fn event<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Path(id): Path<String>,
) -> Page {
    let mut chrome = c.chrome("events");
    let record = read_record(&c, &id).await?;
    let calls = calls_of(&record);
    let e = &record.event;
    let neighbours = neighbours(&c, &record, &mut chrome.errors).await;
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
        next_attempt: next_attempt(&record),
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

/// The record of event `id`; a page saying why when there is none.
async fn read_record<R: Reads>(c: &Console<R>, id: &str) -> Result<EventRecord, Failed> {
    if !hooks_core::ingest::valid_stored_id(id) {
        return Err(fail(
            c,
            StatusCode::NOT_FOUND,
            "No such event",
            format!("`{id}` is not an event id"),
        ));
    }
    c.events
        .get(id)
        .await
        .map_err(|e| store_failed(c, &e))?
        .ok_or_else(|| {
            fail(
                c,
                StatusCode::NOT_FOUND,
                "No such event",
                format!("No event has the id `{id}` (records are kept 30 days)."),
            )
        })
}

/// The key's events changed within a day of this one's arrival; when they
/// cannot be read, none, with a note in `errors`.
async fn neighbours<R: Reads>(
    c: &Console<R>,
    record: &EventRecord,
    errors: &mut Vec<String>,
) -> Vec<EventRowView> {
    let e = &record.event;
    let window_end = (e.received_at + TimeDelta::days(1)).min(Utc::now() + TimeDelta::minutes(5));
    let rows = c
        .logs
        .events(&EventQuery {
            key: Some(e.key.clone()),
            since: Some(e.received_at - TimeDelta::days(1)),
            after: Some((time_key(&window_end), "~".into())),
            limit: NEIGHBOURS,
            ..EventQuery::default()
        })
        .await;
    match rows {
        Ok(rows) => rows.iter().map(row_view).collect(),
        Err(err) => {
            errors.push(format!(
                "The other events of the key could not be read: {err}"
            ));
            Vec::new()
        }
    }
}

/// When a failed event is tried again; empty for any other.
fn next_attempt(r: &EventRecord) -> String {
    r.next_attempt_at
        .filter(|_| r.status == EventStatus::Failed)
        .map(|t| format!("{} UTC (in {})", time(&t), ago(&Utc::now(), t)))
        .unwrap_or_default()
}

/// A value as indented JSON.
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

/// The before handlers' decision on the event, and who forbade it; empty
/// when no before handler was called.
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
