//! Reads and views that more than one page draws on: the recent calls the
//! handlers' health comes from, a health's durations, a row of events.

use chrono::{TimeDelta, Utc};
use hooks_core::records::{LogEntry, LogQuery};
use hooks_core::store::StoreError;
use hooks_core::store::recent::EventRow;

use super::common::{Console, Reads};
use super::query::q;
use crate::console::health::Health;
use crate::console::views::{EventRowView, status_class, time};
use hooks_core::store::Listings;

/// The calls the handlers' health is drawn from: the newest of the last
/// 24 hours, at most this many (a page stays one bounded read).
pub(super) const HEALTH_CALLS: usize = 2000;

/// The newest calls of the last 24 hours, and a label for what they cover.
pub(super) async fn recent_calls<R: Reads>(
    c: &Console<R>,
) -> Result<(Vec<LogEntry>, String), StoreError> {
    let calls = c
        .logs
        .calls(&LogQuery {
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

/// A health's p50 / p95 durations, or `-` without calls.
pub(super) fn durations(h: &Health) -> String {
    match (h.p50_ms, h.p95_ms) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "-".into(),
    }
}

/// An event, as a row of a list of events.
pub(super) fn row_view(r: &EventRow) -> EventRowView {
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
