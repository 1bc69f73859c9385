//! `hooks pause ID` / `hooks resume ID`: the break-glass switch of a
//! handler's runtime state (not config: `handlers.toml` does not change, and
//! `hooks sync` leaves it alone). See `hooks_core::pause`.

use std::process::ExitCode;

use chrono::Utc;
use hooks_core::config::{HandlerId, Phase};
use hooks_core::pause::{HandlerHealth, write};
use hooks_core::store::ConfigStore;

use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The handler's id (`hooks list --live` shows them and their state).
    handler: HandlerId,
    /// Why; kept in the handler's state history and shown by `hooks list --live`.
    #[arg(long, short = 'r')]
    reason: Option<String>,
    /// Who [default: $HOOKS_ACTOR, $GITHUB_ACTOR or $USER].
    #[arg(long)]
    by: Option<String>,
}

/// Pauses (`pause = true`) or resumes the handler.
pub(crate) fn run(args: Args, pause: bool) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let live = store.live().await?.ok_or_else(|| {
            Failure::new("nothing is live yet: `hooks sync` creates the first revision")
        })?;
        let handler = live.config.handler(args.handler).ok_or_else(|| {
            Failure::new(format!(
                "no handler {} in the live revision {} (`hooks list --live` lists them)",
                args.handler, live.info.revision
            ))
        })?;
        if pause && handler.phase == Phase::Before {
            return Err(Failure::new(format!(
                "handler {} is a before handler: a decision cannot wait for it. To stop asking it, set `status = \"disabled\"` (or `on_error = \"allow\"` with a short timeout) and `hooks sync`",
                handler.id
            )));
        }
        let by = remote::actor(args.by.as_deref());
        let reason = args.reason.clone().unwrap_or_else(|| {
            if pause { "paused by hand" } else { "resumed by hand" }.to_owned()
        });
        let now = Utc::now();
        let current = store.health_of(handler.id).await?;
        let change = |h: &HandlerHealth| match (pause, h.paused.is_some()) {
            (true, false) => Some(h.pause_by(&by, &reason, now)),
            (false, true) => Some(h.resume_by(&by, &reason, now)),
            _ => None,
        };
        let already = |h: &Option<HandlerHealth>| {
            h.as_ref().map_or(
                format!("handler {} is running", handler.id),
                HandlerHealth::describe,
            )
        };
        match write(&store, handler.id, current.clone(), change).await? {
            Some(h) if pause => outln!(
                "Paused handler {} ({}). Its events wait in order, attempts untouched; there are no probes until `hooks resume {}`.",
                h.handler_id,
                handler.name,
                h.handler_id
            ),
            Some(h) => outln!(
                "Resumed handler {} ({}). Waiting events flow again as their messages come back (within {} s).",
                h.handler_id,
                handler.name,
                hooks_core::pause::PROBE_MAX.as_secs()
            ),
            None => outln!("Nothing to do: {}.", already(&store.health_of(handler.id).await?)),
        }
        Ok(ExitCode::SUCCESS)
    })
}
