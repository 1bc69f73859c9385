use std::process::ExitCode;

use crate::commands::logs::{HEADER, WIDTHS, row};
use crate::failure::{Failure, Outcome};
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
pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let wiring = remote::wiring().await?;
        let record = wiring
            .event_store()
            .get(&args.id)
            .await?
            .ok_or_else(|| Failure::new(format!("no event `{}`", args.id)))?;
        let calls = hooks_core::store::logs::calls_of(&record);
        if args.json {
            // The calls once, oldest first, beside the record.
            let mut event = record.clone();
            event.calls.clear();
            outln!("{:#}", serde_json::json!({"event": event, "calls": calls}));
            return Ok(ExitCode::SUCCESS);
        }
        let e = &record.event;
        outln!("event     {} ({})", e.event.id, e.event.event);
        outln!("key       {}", e.key);
        if let Some(t) = e.event.trace {
            outln!("trace     {}", t.trace_id_hex());
        }
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
        Ok(ExitCode::SUCCESS)
    })
}
