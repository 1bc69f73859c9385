//! `hooks pause ID` / `hooks resume ID`: the break-glass switch of a
//! handler's runtime state (not config: `handlers.toml` does not change, and
//! `hooks sync` leaves it alone). See `hooks_core::pause`.

use std::process::ExitCode;

use chrono::Utc;
use hooks_core::config::{HandlerId, Phase, Status};
use hooks_core::pause::{HandlerHealth, write};
use hooks_core::store::ConfigStore;

use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The handler's id (`hooks list --live` shows them and their state).
    handler: HandlerId,
    /// Why (at most 500 characters); kept in the handler's state history
    /// and shown by `hooks list --live`.
    #[arg(long, short = 'r', value_parser = bounded::<MAX_REASON_CHARS>)]
    reason: Option<String>,
    /// Who [default: $HOOKS_ACTOR, $GITHUB_ACTOR or $USER] (at most 100 characters).
    #[arg(long, value_parser = bounded::<MAX_BY_CHARS>)]
    by: Option<String>,
}

/// The longest `--reason`: the state keeps [`hooks_core::pause::HISTORY`]
/// changes in one item, which DynamoDB caps at 400 KB, so every later pause
/// must still fit.
const MAX_REASON_CHARS: usize = 500;
const MAX_BY_CHARS: usize = 100;

/// A text of at most `N` characters, without control characters.
fn bounded<const N: usize>(text: &str) -> Result<String, String> {
    let n = text.chars().count();
    if n > N {
        return Err(format!("{n} characters; at most {N}"));
    }
    if text.chars().any(char::is_control) {
        return Err("control characters (a newline, a tab…) are not kept".into());
    }
    Ok(text.to_owned())
}

/// Pauses (`pause = true`) or resumes the handler.
pub(crate) fn run(args: Args, pause: bool) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let live = store.live().await?.ok_or_else(|| {
            Failure::new("nothing is live yet: `hooks sync` creates the first revision")
        })?;
        let handler = live.config.handler(args.handler);
        let name = match (handler, pause) {
            (Some(h), _) => h.name.clone(),
            // A handler deleted while paused can still be resumed: its old
            // state would otherwise stay paused.
            (None, false) => "not in the live revision".to_owned(),
            (None, true) => {
                return Err(Failure::new(format!(
                    "no handler {} in the live revision {} (`hooks list --live` lists them)",
                    args.handler, live.info.revision
                )));
            }
        };
        if let (Some(h), true) = (handler, pause) {
            if h.phase == Phase::Before {
                return Err(Failure::new(format!(
                    "handler {} is a before handler: a decision cannot wait for it. To stop asking it, set `status = \"disabled\"` (or `on_error = \"allow\"` with a short timeout) and `hooks sync`",
                    h.id
                )));
            }
            if h.status != Status::Enabled {
                return Err(Failure::new(format!(
                    "handler {} is {}: only an enabled handler is paused (a shadow handler never holds events up; a disabled one is not called)",
                    h.id, h.status
                )));
            }
        }
        let by = remote::actor(args.by.as_deref());
        let reason = args.reason.clone().unwrap_or_else(|| {
            if pause { "paused by hand" } else { "resumed by hand" }.to_owned()
        });
        let now = Utc::now();
        let id = args.handler;
        let current = store.health_of(id).await?;
        if handler.is_none() && current.is_none() {
            return Err(Failure::new(format!(
                "no handler {id} in the live revision {} and no state kept for it (`hooks list --live` lists them)",
                live.info.revision
            )));
        }
        // A pause by hand also takes over one the handler made itself: no
        // more probes, until `hooks resume`.
        let change = |h: &HandlerHealth| match (pause, &h.paused) {
            (true, Some(p)) if p.probe_at.is_none() => None,
            (true, _) => Some(h.pause_by(&by, &reason, now)),
            (false, Some(_)) => Some(h.resume_by(&by, &reason, now)),
            (false, None) => None,
        };
        let already = |h: &Option<HandlerHealth>| {
            h.as_ref()
                .map_or(format!("handler {id} is running"), HandlerHealth::describe)
        };
        match write(&store, id, current, change).await? {
            Some(h) if pause => outln!(
                "Paused handler {} ({name}). Its events wait in order, attempts untouched; there are no probes until `hooks resume {}`.",
                h.handler_id,
                h.handler_id
            ),
            Some(h) => {
                store.reset_failures(id).await?;
                outln!(
                "Resumed handler {} ({name}). Waiting events flow again as their messages come back: each looks again within one probe interval (at most {} s), or {} s after a pause by hand.",
                h.handler_id,
                hooks_core::pause::PROBE_MAX
                    .max(live.config.defaults.probe_every)
                    .as_secs(),
                hooks_core::pause::MANUAL_RECHECK.as_secs()
            )
            }
            None => outln!("Nothing to do: {}.", already(&store.health_of(id).await?)),
        }
        Ok(ExitCode::SUCCESS)
    })
}
