use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use hooks_core::store::{StoreError, short_hash};
use hooks_core::sync::{SyncError, apply, plan_against};

use crate::FileArgs;
use crate::commands::plan::against;
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

pub(crate) fn run(args: Args) -> ExitCode {
    let file = &args.common.file;
    let config = match output::load(file, args.common.scripts_dir.as_deref(), 1) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = match remote::source(file, args.by.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match remote::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let store = match remote::wiring().await {
            Ok(w) => w.config_store(),
            Err(e) => return remote::report_store(&e),
        };
        let prepared = match plan_against(&store, config, source).await {
            Ok(p) => p,
            Err(e) => return remote::report_sync(&e),
        };
        if let Some(expected) = args.against
            && prepared.against() != Some(expected)
        {
            return remote::report_store(&StoreError::Conflict {
                expected: Some(expected),
                actual: prepared.against(),
            });
        }
        let Some(next) = &prepared.next else {
            outln!(
                "No changes: {} already matches {}.",
                against(&prepared),
                file.display()
            );
            return ExitCode::SUCCESS;
        };
        outln!("Sync {} against {}:\n", file.display(), against(&prepared));
        out!("{}", prepared.plan.render_text());
        if !args.yes {
            if !std::io::stdin().is_terminal() {
                eprintln!("error: not on a terminal; pass --yes to sync without confirmation");
                return ExitCode::FAILURE;
            }
            if !confirm() {
                eprintln!("Nothing synced.");
                return ExitCode::FAILURE;
            }
        }
        match apply(&store, &prepared).await {
            Ok(Some(head)) => {
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
                ExitCode::SUCCESS
            }
            Ok(None) => ExitCode::SUCCESS,
            Err(SyncError::Store(e)) => remote::report_store(&e),
            Err(e) => remote::report_sync(&e),
        }
    })
}
