//! `/handlers/{id}`: one live handler: its definition as handlers.toml has
//! it, since which revision it has been so, its health and latest calls.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use hooks_core::config::{Handler, HandlerId};
use hooks_core::records::{LogEntry, LogQuery};
use hooks_core::store::{ConfigStore, Revision, short_hash};

use super::common::{Console, Failed, Page, Reads, fail, render, store_failed};
use super::shared::{durations, recent_calls};
use crate::console::charts;
use crate::console::health::{self, Health};
use crate::console::views::{CallView, HandlerPage, time};
use hooks_core::store::Listings;

/// The calls a handler's page lists.
const HANDLER_CALLS: usize = 25;

/// How many revisions back the page looks for where the handler's current
/// form began.
const LOOK_BACK: u64 = 25;

pub(crate) async fn handler<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Path(id): Path<String>,
) -> Page {
    let id = parse_id(&c, &id)?;
    let live = live_revision(&c).await?;
    let h = find(&c, &live, id)?;
    let (calls, window) = recent_calls(&c).await.map_err(|e| store_failed(&c, &e))?;
    let health = health::per_handler(&calls, Utc::now())
        .remove(&id)
        .unwrap_or_default();
    let log = latest_calls(&c, &calls, id).await?;
    let introduced = introduced(&c, &live, id).await;
    let definition = hooks_core::config::handler_source(&live.source, id)
        .map(str::to_owned)
        .or_else(|| toml::to_string(h).ok())
        .unwrap_or_default();
    render(&HandlerPage {
        chrome: c.chrome("handlers"),
        id,
        name: h.name.clone(),
        status: h.status.to_string(),
        phase: h.phase.to_string(),
        kind: h.target.kind().to_string(),
        location: h.target.summary(),
        window,
        health_calls: health.calls,
        health_failures: failures(&health),
        health_durations: durations(&health),
        spark: charts::sparkline(&health.per_hour, "calls per hour"),
        introduced,
        definition,
        calls: log.iter().map(CallView::from).collect(),
        log_link: format!("/logs?handler={id}"),
        log_command: format!("hooks logs --handler {id}"),
    })
}

/// The handler id of the path; anything else is no page.
fn parse_id<R: Reads>(c: &Console<R>, id: &str) -> Result<HandlerId, Failed> {
    id.parse::<u32>().map_err(|_| {
        fail(
            c,
            StatusCode::NOT_FOUND,
            "No such handler",
            format!("`{id}` is not a handler id"),
        )
    })
}

/// The live revision: without one there are no handlers to show.
async fn live_revision<R: Reads>(c: &Console<R>) -> Result<Revision, Failed> {
    c.config
        .live()
        .await
        .map_err(|e| store_failed(c, &e))?
        .ok_or_else(|| {
            fail(
                c,
                StatusCode::NOT_FOUND,
                "Nothing is live",
                "`hooks sync` makes the first revision.".into(),
            )
        })
}

/// Handler `id` of the live revision; when it is not there, a page that
/// says whether it was deleted (and when) or never was.
fn find<'a, R: Reads>(
    c: &Console<R>,
    live: &'a Revision,
    id: HandlerId,
) -> Result<&'a Handler, Failed> {
    if let Some(h) = live.config.handlers.iter().find(|h| h.id == id) {
        return Ok(h);
    }
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
    Err(fail(c, StatusCode::NOT_FOUND, "No such handler", gone))
}

/// Handler `id`'s latest calls: those of the health sample `recent` when it
/// holds enough (a busy handler), else its own walk through the log.
async fn latest_calls<R: Reads>(
    c: &Console<R>,
    recent: &[LogEntry],
    id: HandlerId,
) -> Result<Vec<LogEntry>, Failed> {
    let log: Vec<LogEntry> = recent
        .iter()
        .filter(|e| e.record.handler_id == id)
        .take(HANDLER_CALLS)
        .cloned()
        .collect();
    if log.len() >= HANDLER_CALLS {
        return Ok(log);
    }
    c.logs
        .calls(&LogQuery {
            handler: Some(id),
            limit: HANDLER_CALLS,
            ..LogQuery::default()
        })
        .await
        .map_err(|e| store_failed(c, &e))
}

/// The failures among the calls, with their rate, or `-` without calls.
fn failures(health: &Health) -> String {
    health
        .failure_rate()
        .map_or("-".into(), |r| format!("{} ({r:.1} %)", health.failures))
}

/// The oldest revision, among the recent ones, from which handler `id` has
/// been as it is in `live` (unchanged since).
async fn introduced<R: Reads>(c: &Console<R>, live: &Revision, id: HandlerId) -> String {
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
