use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use hooks_core::store::short_hash;
use hooks_core::sync::{apply, plan_rollback};

use crate::commands::plan::against;
use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The revision whose content becomes live again (`hooks history` lists them).
    revision: u64,
    /// Apply without asking (required when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// Who rolls back [default: $HOOKS_ACTOR, $GITHUB_ACTOR or $USER].
    #[arg(long)]
    by: Option<String>,
}

fn confirm() -> bool {
    eprint!("Roll back? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

/// A new revision with an old one's content, through the guarded switch.
pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let prepared =
            plan_rollback(&store, args.revision, remote::actor(args.by.as_deref())).await?;
        let Some(next) = &prepared.next else {
            outln!(
                "No changes: {} already has the content of revision {}.",
                against(&prepared),
                args.revision
            );
            return Ok(ExitCode::SUCCESS);
        };
        outln!(
            "Roll back to revision {} against {}:\n",
            args.revision,
            against(&prepared)
        );
        out!("{}", prepared.plan.render_text());
        if !args.yes {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::new(
                    "not on a terminal; pass --yes to roll back without confirmation",
                ));
            }
            if !confirm() {
                eprintln!("Nothing changed.");
                return Ok(ExitCode::FAILURE);
            }
        }
        if let Some(head) = apply(&store, &prepared).await? {
            outln!(
                "Rolled back: revision {} is live with the content of revision {} (hash {}). \
                 handlers.toml in git still differs: `hooks plan` shows how; commit the fix or revert there.",
                head.revision,
                args.revision,
                short_hash(&next.info.content_hash)
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
