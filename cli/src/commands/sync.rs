use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use hooks_core::store::{StoreError, short_hash};
use hooks_core::sync::{apply, plan_against};

use crate::FileArgs;
use crate::commands::plan::against;
use crate::failure::{Failure, Outcome};
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: FileArgs,
    /// Apply without asking (required when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// Refuse unless this is the live revision (the one a reviewed plan was made against).
    #[arg(long, value_name = "REVISION")]
    against: Option<u64>,
    /// Who syncs [default: $HOOKS_ACTOR, $GITHUB_ACTOR or $USER].
    #[arg(long)]
    by: Option<String>,
}

fn confirm() -> bool {
    eprint!("Apply these changes? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

pub(crate) fn run(args: Args) -> Outcome {
    let file = &args.common.file;
    let config = output::load(file, args.common.scripts_dir.as_deref(), 1)?;
    let source = remote::source(file, args.by.as_deref())?;
    let rt = remote::runtime()?;
    rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let prepared = plan_against(&store, config, source).await?;
        if let Some(expected) = args.against
            && prepared.against() != Some(expected)
        {
            return Err(StoreError::Conflict {
                expected: Some(expected),
                actual: prepared.against(),
            }
            .into());
        }
        let Some(next) = &prepared.next else {
            outln!(
                "No changes: {} already matches {}.",
                against(&prepared),
                file.display()
            );
            return Ok(ExitCode::SUCCESS);
        };
        outln!("Sync {} against {}:\n", file.display(), against(&prepared));
        out!("{}", prepared.plan.render_text());
        if !args.yes {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::new(
                    "not on a terminal; pass --yes to sync without confirmation",
                ));
            }
            if !confirm() {
                eprintln!("Nothing synced.");
                return Ok(ExitCode::FAILURE);
            }
        }
        match apply(&store, &prepared).await? {
            Some(head) => {
                outln!(
                    "Synced: revision {} is live ({} handlers, hash {}{}).",
                    head.revision,
                    next.info.handlers,
                    short_hash(&head.content_hash),
                    next.info
                        .git_commit
                        .as_deref()
                        .map(|c| format!(", commit {}", short_hash(c)))
                        .unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            }
            None => Ok(ExitCode::SUCCESS),
        }
    })
}
