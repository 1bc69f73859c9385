use std::process::ExitCode;

use chrono::{DateTime, Utc};
use hooks_core::config::HandlerId;
use hooks_core::events::Event;
use hooks_core::replay::{Range, Replay, replay_dead, replay_event, replay_range};
use hooks_core::store::ConfigStore;

use crate::commands::logs::parse_since;
use crate::failure::{Failure, Outcome};
use crate::remote;

/// Three ways: one event (`--event ID`), the dead-letter queue (`--dead`),
/// or the events received in a time range (`--since T`, with `--event TYPE`
/// as a filter: an event type there, not an id).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Alone: put this event (by id) back on the queue. With --since: only
    /// events of this type (`clients.create`).
    #[arg(long = "event", value_name = "ID|TYPE")]
    event: Option<String>,
    /// Put the dead-lettered events back on the queue.
    #[arg(long, conflicts_with = "event")]
    dead: bool,
    /// With --dead: only events dead-lettered since then. Alone: replay the
    /// events received since then through the current config (`2h`, `7d`,
    /// or an RFC 3339 time).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// With --since: received until then.
    #[arg(long, value_parser = parse_since, requires = "since", conflicts_with = "dead")]
    until: Option<DateTime<Utc>>,
    /// With --since: replay to this handler alone (the events it would be
    /// called for under the current config, with the data as the chain left it).
    #[arg(long, requires = "since", conflicts_with = "dead")]
    handler: Option<HandlerId>,
    /// With --since (a range): refuse above this many events (at most
    /// 100,000; default 10,000).
    #[arg(long, conflicts_with = "dead", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: Option<u32>,
    /// With --since (a range): do it (without it, only list what would be replayed).
    #[arg(long, requires = "since", conflicts_with = "dead")]
    yes: bool,
    /// With --event ID or --dead: call every handler again, with the data
    /// as billing sent it (default: only the handlers not yet done, with a
    /// fresh retry schedule). A range always runs the whole current chain.
    #[arg(long)]
    from_start: bool,
    /// With --event ID: replay it even though it is still on its way
    /// (queued or running). An event waiting for a retry needs no --force:
    /// its retry happens now.
    #[arg(long, conflicts_with = "dead")]
    force: bool,
}

pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        if args.limit.is_some() && args.since.is_none() {
            return Err(Failure::new("--limit is for a range (--since)").with_code(2));
        }
        match (&args.event, args.dead, args.since) {
            (Some(id), false, None) => one(id, &args).await,
            (_, true, since) => dead(since, args.from_start).await,
            (kind, false, Some(since)) => range(kind.as_deref(), since, &args).await,
            (None, false, None) => Err(Failure::new(
                "say what to replay: --event ID, --dead, or --since T (a time range)",
            )
            .with_code(2)),
        }
    })
}

async fn one(id: &str, args: &Args) -> Outcome {
    let wiring = remote::wiring().await?;
    let events = wiring.event_store();
    let queue = wiring.queue().await?;
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
    Ok(ExitCode::SUCCESS)
}

async fn dead(since: Option<DateTime<Utc>>, from_start: bool) -> Outcome {
    let wiring = remote::wiring().await?;
    let events = wiring.event_store();
    let queue = wiring.queue().await?;
    let r = replay_dead(&events, &queue, since, from_start).await?;
    for id in &r.replayed {
        outln!("replayed {id}");
    }
    for (id, why) in &r.skipped {
        outln!("skipped {id}: {why} (its stale copy was removed)");
    }
    // Messages this drain (or one that ran a moment ago) received and kept
    // are hidden for the dead-letter queue's visibility timeout (30 s): a
    // second drain meanwhile does not see them, and must not call them gone.
    // (This drain's own kept messages are among them: counted once.)
    let hidden = match queue.counts().await {
        Ok([_, dlq]) => dlq.in_flight.saturating_sub(r.kept as u64),
        Err(e) => {
            eprintln!("could not count the dead-letter queue's hidden messages: {e}");
            0
        }
    };
    outln!(
        "{} replayed, {} skipped, {} left on the dead-letter queue{}",
        r.replayed.len(),
        r.skipped.len(),
        r.kept,
        if hidden > 0 {
            format!(
                "; {hidden} more are hidden for up to 30 s by another drain that received them a moment ago: run it again after that"
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A range's arguments that need the live config: an empty range, or a
/// handler that is not there or is a before handler, are refused.
fn check_range(
    args: &Args,
    since: DateTime<Utc>,
    config: &hooks_core::config::Config,
    revision: u64,
) -> Result<(), Failure> {
    if let Some(until) = args.until
        && until <= since
    {
        return Err(Failure::new(format!(
            "--until ({}) is not after --since ({}): the range is empty (`--since 2h --until 1h` is the hour before last)",
            until.format("%Y-%m-%d %H:%M:%S UTC"),
            since.format("%Y-%m-%d %H:%M:%S UTC")
        ))
        .with_code(2));
    }
    if let Some(h) = args.handler {
        match config.handler(h) {
            None => {
                return Err(Failure::new(format!(
                    "no handler {h} in the live revision {}",
                    revision
                )));
            }
            Some(handler) if handler.phase == hooks_core::config::Phase::Before => {
                return Err(Failure::new(format!(
                    "handler {h} is a before handler: it answers decisions, which are never replayed (billing asks again)"
                ))
                .with_code(2));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn range(kind: Option<&str>, since: DateTime<Utc>, args: &Args) -> Outcome {
    if args.from_start || args.force {
        return Err(Failure::new(
            "a range replays each event through the whole current chain from the start, and never one still on its way: --from-start and --force are for --event ID",
        )
        .with_code(2));
    }
    let event = kind
        .map(|k| {
            k.parse::<Event>().map_err(|e| {
                Failure::new(format!(
                    "with --since, --event is an event type such as clients.create: {e}"
                ))
                .with_code(2)
            })
        })
        .transpose()?;
    let wiring = remote::wiring().await?;
    let live = wiring.config_store().live().await?.ok_or_else(|| {
        Failure::new("nothing is live yet: `hooks sync` creates the first revision")
    })?;
    check_range(args, since, &live.config, live.info.revision)?;
    let range = Range {
        since,
        until: args.until,
        event,
        handler: args.handler,
        max: args.limit.map_or(10_000, |n| n as usize),
    };
    let queue = wiring.queue().await?;
    let r = replay_range(
        &wiring.log_store(),
        &wiring.event_store(),
        &queue,
        &live.config,
        &range,
        args.yes,
    )
    .await?;
    let verb = if args.yes { "replayed" } else { "would replay" };
    for id in &r.replayed {
        outln!("{verb} {id}");
    }
    for (id, why) in &r.skipped {
        outln!("skipped {id}: {why}");
    }
    outln!(
        "{} {verb} through live revision {}{}, {} skipped{}",
        r.replayed.len(),
        live.info.revision,
        args.handler
            .map(|h| format!(" (to handler {h} only)"))
            .unwrap_or_default(),
        r.skipped.len(),
        if args.yes {
            ""
        } else {
            "; nothing was sent: --yes replays them"
        }
    );
    Ok(ExitCode::SUCCESS)
}
