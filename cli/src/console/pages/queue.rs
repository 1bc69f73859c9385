//! `/queue`: the queue and its dead-letter queue: their counts, how long
//! the oldest waiting and dead events have been so, and the dead events of
//! a period, each with the command that replays it.

use std::sync::Arc;

use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use hooks_core::records::EventStatus;
use hooks_core::store::recent::{EventQuery, EventRow};
use hooks_core::store::{QueueDepth, StoreError};

use super::common::{Console, Page, Reads, render, store_failed};
use super::query::sh;
use crate::commands::logs::parse_since;
use crate::console::views::{DeadRow, QueuePage, ago, time};
use hooks_core::store::Listings;

/// The periods the page offers; any other value is the default.
const PERIODS: [&str; 4] = ["1h", "24h", "7d", "30d"];

/// The period shown when none of [`PERIODS`] is asked for.
const DEFAULT_PERIOD: &str = "24h";

/// The events of one status the page reads at most.
const EVENTS_READ: usize = 1000;

/// The page's query: the period whose events are shown.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct QueueFilter {
    since: String,
}

/// The `/queue` page.
pub(crate) async fn queue<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Query(f): Query<QueueFilter>,
) -> Page {
    let mut chrome = c.chrome("queue");
    let since_label = period(&f);
    let since = parse_since(&since_label).ok();
    let [main, dead] = c.queue.counts().await.map_err(|e| store_failed(&c, &e))?;
    let now = Utc::now();
    let oldest_waiting = match of_status(&c, EventStatus::Failed, since).await {
        Ok(rows) => oldest(&rows, now),
        Err(e) => {
            chrome
                .errors
                .push(format!("The waiting events could not be read: {e}"));
            "-".into()
        }
    };
    let rows = of_status(&c, EventStatus::Dead, since)
        .await
        .map_err(|e| store_failed(&c, &e))?;
    render(&QueuePage {
        chrome,
        main,
        dead,
        oldest_waiting,
        oldest_dead: oldest(&rows, now),
        replay_all: format!("hooks replay --dead --since {since_label}"),
        since: since_label,
        rows: rows.iter().map(dead_row).collect(),
    })
}

/// The period asked for, when the page offers it, else the default.
fn period(f: &QueueFilter) -> String {
    if PERIODS.contains(&f.since.as_str()) {
        f.since.clone()
    } else {
        DEFAULT_PERIOD.to_owned()
    }
}

/// The events of `status` changed since `since`, newest first.
async fn of_status<R: Reads>(
    c: &Console<R>,
    status: EventStatus,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<EventRow>, StoreError> {
    c.logs
        .events(&EventQuery {
            statuses: vec![status],
            since,
            limit: EVENTS_READ,
            ..EventQuery::default()
        })
        .await
}

/// How long ago the oldest of `rows` (newest first) changed, or `-`.
fn oldest(rows: &[EventRow], now: DateTime<Utc>) -> String {
    rows.last()
        .and_then(EventRow::updated_at)
        .map_or("-".into(), |t| format!("{} ago", ago(&t, now)))
}

/// A dead event, as a row of the list, with its replay command.
fn dead_row(r: &EventRow) -> DeadRow {
    DeadRow {
        time: r.updated_at().as_ref().map(time).unwrap_or_default(),
        id: r.id.clone(),
        event: r.event.clone(),
        key: r.key.clone(),
        replay: format!("hooks replay --event {}", sh(&r.id)),
    }
}
