use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hooks_core::chain::Outcome as CallOutcome;
use hooks_core::records::{LogEntry, LogQuery};

use crate::failure::Outcome;
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Calls of this handler.
    #[arg(long)]
    handler: Option<u32>,
    /// Calls for this event.
    #[arg(long)]
    event_id: Option<String>,
    /// processed | modified | forbidden | failed | timed_out | skipped.
    #[arg(long, value_parser = parse_outcome)]
    outcome: Option<CallOutcome>,
    /// Only calls since then: a duration ago (`1h`, `30m`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// At most this many calls, newest first.
    #[arg(long, default_value = "50")]
    limit: usize,
    /// Keep printing new calls as they come.
    #[arg(long)]
    follow: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_outcome(s: &str) -> Result<CallOutcome, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("one of: {}", CallOutcome::NAMES.join(", ")))
}

pub(crate) fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is neither a duration such as 1h nor an RFC 3339 time"))?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| format!("`{s}` is too long ago"))
}

pub(crate) fn row(e: &LogEntry) -> Vec<String> {
    let r = &e.record;
    vec![
        r.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        r.event_id.clone(),
        r.event.to_string(),
        format!("{} {}", r.handler_id, r.handler_name),
        r.attempt.to_string(),
        r.outcome_label(),
        r.status_code
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        r.duration_ms.to_string(),
        r.error
            .clone()
            .or_else(|| r.reason.clone())
            .unwrap_or_default(),
    ]
}

pub(crate) const HEADER: [&str; 9] = [
    "TIME (UTC)",
    "EVENT ID",
    "EVENT",
    "HANDLER",
    "ATT",
    "OUTCOME",
    "HTTP",
    "MS",
    "ERROR / REASON",
];
pub(crate) const WIDTHS: [usize; 9] = [23, 28, 24, 30, 3, 20, 4, 6, 60];

fn print(entries: &[LogEntry], json: bool, header: bool) {
    if json {
        for e in entries {
            outln!("{}", serde_json::to_string(e).unwrap_or_default());
        }
    } else if !entries.is_empty() {
        let rows: Vec<Vec<String>> = entries.iter().map(row).collect();
        let table = output::table(&HEADER, &rows, &WIDTHS);
        let text = if header {
            table
        } else {
            table.lines().skip(1).map(|l| format!("{l}\n")).collect()
        };
        out!("{text}");
    }
}

pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.log_store();
        let mut query = LogQuery {
            event_id: args.event_id.clone(),
            handler: args.handler,
            outcome: args.outcome,
            since: args.since,
            limit: args.limit,
            ..LogQuery::default()
        };
        let mut entries = store.query(&query).await?;
        entries.reverse();
        if entries.is_empty() && !args.follow {
            eprintln!("no calls match");
        }
        print(&entries, args.json, true);
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("(following: new calls appear as they are logged; Ctrl-C stops)");
        let key = |e: &LogEntry| {
            format!(
                "{}#{}#{}#{}",
                e.record.event_id, e.record.handler_id, e.record.attempt, e.record.started_at
            )
        };
        let mut seen: HashSet<String> = entries.iter().map(key).collect();
        let mut header = entries.is_empty();
        // Entries are written when a run ends, up to a minute after they
        // started: look back that far, and far enough forward to see a burst.
        const LOOK_BACK: i64 = 90;
        let mut newest = entries
            .last()
            .map(|e| e.record.started_at)
            .unwrap_or_else(Utc::now);
        query.limit = 10_000;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            query.since = Some(newest - chrono::Duration::seconds(LOOK_BACK));
            match store.query(&query).await {
                Ok(mut new) => {
                    new.retain(|e| seen.insert(key(e)));
                    new.reverse();
                    if let Some(last) = new.iter().map(|e| e.record.started_at).max() {
                        newest = newest.max(last);
                    }
                    print(&new, args.json, header && !new.is_empty());
                    if !new.is_empty() {
                        header = false;
                    }
                }
                Err(e) => eprintln!("warning: {e}"),
            }
        }
    })
}
