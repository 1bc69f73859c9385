use std::process::ExitCode;

use crate::commands::logs::{HEADER, WIDTHS, row};
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The event id.
    id: String,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// The chain of one event, handler by handler.
pub(crate) fn run(args: Args) -> ExitCode {
    let rt = match remote::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let (events, logs) = match remote::wiring().await {
            Ok(w) => (w.event_store(), w.log_store()),
            Err(e) => return remote::report_store(&e),
        };
        let record = match events.get(&args.id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                eprintln!("error: no event `{}`", args.id);
                return ExitCode::FAILURE;
            }
            Err(e) => return remote::report_store(&e),
        };
        let calls = match logs.calls_of(&record).await {
            Ok(c) => c,
            Err(e) => return remote::report_store(&e),
        };
        if args.json {
            outln!("{:#}", serde_json::json!({"event": record, "calls": calls}));
            return ExitCode::SUCCESS;
        }
        let e = &record.event;
        outln!("event     {} ({})", e.event.id, e.event.event);
        outln!("key       {}", e.key);
        outln!("status    {}", record.status.as_str());
        outln!(
            "received  {}",
            e.received_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        outln!(
            "runs      {} (config revision {})",
            record.runs,
            record.revision.map_or("-".into(), |r| r.to_string())
        );
        if let Some(at) = record.next_attempt_at {
            outln!("next try  {}", at.format("%Y-%m-%d %H:%M:%S UTC"));
        }
        if let Some(err) = &record.last_error {
            outln!("last error {err}");
        }
        outln!("done      {:?}", record.progress.completed);
        outln!("");
        let rows: Vec<Vec<String>> = calls.iter().map(row).collect();
        if rows.is_empty() {
            outln!("no handler calls yet");
        } else {
            out!("{}", output::table(&HEADER, &rows, &WIDTHS));
        }
        ExitCode::SUCCESS
    })
}
