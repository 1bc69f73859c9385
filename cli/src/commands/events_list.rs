use std::process::ExitCode;

use chrono::{DateTime, Utc};
use hooks_core::events::Event;
use hooks_core::records::EventStatus;
use hooks_core::store::recent::{EventQuery, STATUS_FILTERS, statuses_named};

use crate::commands::logs::parse_since;
use crate::failure::Outcome;
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// dead | waiting (for a retry) | queued | running | succeeded | forbidden (repeatable).
    #[arg(long, value_parser = parse_status)]
    status: Vec<Vec<EventStatus>>,
    /// Events of this type, e.g. `clients.create`.
    #[arg(long)]
    event: Option<Event>,
    /// Events of this ordering key.
    #[arg(long)]
    key: Option<String>,
    /// Changed since then: a duration ago (`1h`, `2d`) or an RFC 3339 time [default: 7 days].
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// At most this many events.
    #[arg(long, default_value = "50")]
    limit: usize,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_status(s: &str) -> Result<Vec<EventStatus>, String> {
    statuses_named(s).ok_or_else(|| format!("one of: {}", STATUS_FILTERS.join(", ")))
}

/// Recent events (those that have run at least once), the most recently
/// changed first.
pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.log_store();
        let rows = store
            .events(&EventQuery {
                statuses: args.status.into_iter().flatten().collect(),
                event: args.event,
                key: args.key,
                since: args.since,
                after: None,
                limit: args.limit,
            })
            .await?;
        if args.json {
            for r in &rows {
                outln!(
                    "{}",
                    serde_json::json!({"id": r.id, "event": r.event, "key": r.key, "status": r.status, "updated_at": r.at})
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        if rows.is_empty() {
            eprintln!("no events match");
            return Ok(ExitCode::SUCCESS);
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.updated_at()
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                    r.id.clone(),
                    r.event.clone(),
                    r.key.clone(),
                    r.status.clone(),
                ]
            })
            .collect();
        out!(
            "{}",
            output::table(
                &["CHANGED (UTC)", "EVENT ID", "EVENT", "KEY", "STATUS"],
                &table,
                &[19, 36, 24, 30, 10]
            )
        );
        Ok(ExitCode::SUCCESS)
    })
}
