use std::process::ExitCode;

use chrono::{DateTime, Utc};
use hooks_core::replay::{Replay, replay_dead, replay_event};

use crate::commands::logs::parse_since;
use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Which {
    /// Put this event back on the queue.
    #[arg(long = "event", value_name = "ID")]
    event: Option<String>,
    /// Put the dead-lettered events back on the queue.
    #[arg(long)]
    dead: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    which: Which,
    /// With --dead: only events dead-lettered since then (`1h`, or an RFC 3339 time).
    #[arg(long, value_parser = parse_since, requires = "dead")]
    since: Option<DateTime<Utc>>,
    /// Call every handler again, with the data as billing sent it (default:
    /// only the handlers not yet done, with a fresh retry schedule).
    #[arg(long)]
    from_start: bool,
    /// Replay an event even though it is still on its way (queued or running).
    /// An event waiting for a retry needs no --force: its retry happens now.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let wiring = remote::wiring().await?;
        let events = wiring.event_store();
        let queue = wiring.queue().await?;
        if let Some(id) = &args.which.event {
            let record = events
                .get(id)
                .await?
                .ok_or_else(|| Failure::new(format!("no event `{id}`")))?;
            match replay_event(&events, &queue, &record.event, args.from_start, args.force).await? {
                Replay::Sent => outln!("replayed {id} (was {})", record.status.as_str()),
                Replay::RetryNow => outln!(
                    "{id} was waiting for a retry{}: retrying now",
                    record
                        .next_attempt_at
                        .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default()
                ),
            }
            return Ok(ExitCode::SUCCESS);
        }
        let r = replay_dead(&events, &queue, args.since, args.from_start).await?;
        for id in &r.replayed {
            outln!("replayed {id}");
        }
        for (id, why) in &r.skipped {
            outln!("skipped {id}: {why} (its stale copy was removed)");
        }
        outln!(
            "{} replayed, {} skipped, {} left on the dead-letter queue",
            r.replayed.len(),
            r.skipped.len(),
            r.kept
        );
        Ok(ExitCode::SUCCESS)
    })
}
