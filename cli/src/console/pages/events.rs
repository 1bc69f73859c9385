//! `/events`: the recent events, newest first, filtered and paged by the
//! last row shown; its search box opens an event by id.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use hooks_core::events::Event;
use hooks_core::records::EventStatus;
use hooks_core::store::recent::{EventQuery, EventRow, STATUS_FILTERS, statuses_named};

use super::common::{Console, Failed, Page, Reads, render, store_failed};
use super::query::{PAGE_ROWS, command, parse_opt, parse_time, q, query_string, sh};
use super::shared::row_view;
use crate::console::views::{EventFilters, EventsPage};
use hooks_core::store::{EventLedger, Listings};

/// The `/events` page: the event the search box names, when it exists;
/// else the list.
pub(crate) async fn events<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Query(f): Query<EventFilters>,
) -> Page {
    let mut chrome = c.chrome("events");
    if let Some(page) = search(&c, f.q.trim(), &mut chrome.errors).await? {
        return Ok(page);
    }
    let query = query_of(&f, &mut chrome.errors);
    let rows = c
        .logs
        .events(&query)
        .await
        .map_err(|e| store_failed(&c, &e))?;
    render(&EventsPage {
        chrome,
        status_options: STATUS_FILTERS.iter().map(|s| (*s).to_owned()).collect(),
        event_options: Event::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
        rows: rows.iter().map(row_view).collect(),
        newest_link: newest_link(&f),
        older_link: older_link(&f, &rows),
        replay_dead: replay_dead(&f),
        command: list_command(&f),
        f,
    })
}

/// The search box's event id: a redirect to its page when the event
/// exists; else, when one was typed, a note in `errors` why it is not shown.
async fn search<R: Reads>(
    c: &Console<R>,
    id: &str,
    errors: &mut Vec<String>,
) -> Result<Option<Response>, Failed> {
    if id.is_empty() {
        return Ok(None);
    }
    if !hooks_core::ingest::valid_stored_id(id) {
        errors.push(format!(
            "`{id}` is not an event id: 1 to 128 of A-Z a-z 0-9 -_.:@="
        ));
        return Ok(None);
    }
    match c.events.get(id).await {
        Ok(Some(_)) => Ok(Some(
            Redirect::to(&format!("/events/{}", q(id))).into_response(),
        )),
        Ok(None) => {
            errors.push(format!("No event has the id `{id}`."));
            Ok(None)
        }
        Err(e) => Err(store_failed(c, &e)),
    }
}

/// The store's query of the filters: a page of the events that pass,
/// after the row `after` names (`time|id`). The filters are read in the
/// order the form shows them; one that does not parse is ignored, with a
/// note in `errors`.
fn query_of(f: &EventFilters, errors: &mut Vec<String>) -> EventQuery {
    EventQuery {
        statuses: parse_statuses(&f.status, errors),
        event: parse_opt::<Event>(&f.event, "event", errors),
        key: Some(f.key.trim().to_owned()).filter(|k| !k.is_empty()),
        since: parse_time(&f.since, "since", errors),
        after: f
            .after
            .split_once('|')
            .map(|(a, b)| (a.to_owned(), b.to_owned())),
        limit: PAGE_ROWS,
    }
}

/// The statuses a status filter names (`dead`, `waiting`, …): none when
/// empty; when it names none, a message.
fn parse_statuses(v: &str, errors: &mut Vec<String>) -> Vec<EventStatus> {
    if v.is_empty() {
        return Vec::new();
    }
    statuses_named(v).unwrap_or_else(|| {
        errors.push(format!(
            "The status filter `{v}` is ignored: one of {}",
            STATUS_FILTERS.join(", ")
        ));
        Vec::new()
    })
}

/// This page's filters, with the events shown starting after `after`.
fn link(f: &EventFilters, after: &str) -> String {
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
}

/// The next page, from the last row shown; none when this page is not full.
fn older_link(f: &EventFilters, rows: &[EventRow]) -> String {
    match rows.last() {
        Some(r) if rows.len() >= PAGE_ROWS => link(f, &format!("{}|{}", r.at, r.id)),
        _ => String::new(),
    }
}

/// Back to the newest events; none when this page shows them.
fn newest_link(f: &EventFilters) -> String {
    if f.after.is_empty() {
        String::new()
    } else {
        link(f, "")
    }
}

/// The same list from the command line.
fn list_command(f: &EventFilters) -> String {
    command(
        "hooks events list",
        &[
            ("--status", &f.status),
            ("--event", &f.event),
            ("--key", &f.key),
            ("--since", &f.since),
        ],
    )
}

/// The command that replays the dead events of the period shown.
fn replay_dead(f: &EventFilters) -> String {
    format!(
        "hooks replay --dead{}",
        if f.since.is_empty() {
            String::new()
        } else {
            format!(" --since {}", sh(&f.since))
        }
    )
}
