use std::process::ExitCode;

use hooks_core::pause::{HandlerHealth, Health};
use hooks_core::store::{ConfigStore, short_hash};
use hooks_core::sync::{Prepared, plan_against};

use crate::FileArgs;
use crate::failure::{Failure, Outcome};
use crate::{output, remote};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    /// For a pull-request comment.
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: FileArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// "against revision 3 (synced … by …, commit …)"
pub(crate) fn against(p: &Prepared) -> String {
    match &p.live {
        None => "nothing live yet (first sync)".to_owned(),
        Some(i) => format!(
            "live revision {} (synced {} by {}{})",
            i.revision,
            i.synced_at.format("%Y-%m-%d %H:%M UTC"),
            i.synced_by,
            i.git_commit
                .as_deref()
                .map(|c| format!(", commit {}", short_hash(c)))
                .unwrap_or_default()
        ),
    }
}

/// One line per paused handler: who paused it, when and why.
pub(crate) fn paused_lines(health: &Health) -> Vec<String> {
    health
        .values()
        .filter(|h| h.paused.is_some())
        .map(HandlerHealth::describe)
        .collect()
}

/// Exit code: 0 no changes, 2 changes, 1 error (like `terraform plan -detailed-exitcode`).
pub(crate) fn run(args: Args) -> Outcome {
    let file = &args.common.file;
    // Exit 2 means "changes": every failure exits 1.
    let failed = |f: Failure| f.with_code(1);
    let config = output::load(file, args.common.scripts_dir.as_deref(), 1)?;
    let source = remote::source(file, None).map_err(failed)?;
    let rt = remote::runtime()?;
    let (prepared, health) = rt
        .block_on(async {
            let store = remote::wiring().await?.config_store();
            let health = store.head_and_health().await?.1;
            Ok::<_, Failure>((plan_against(&store, config, source).await?, health))
        })
        .map_err(failed)?;
    let paused = paused_lines(&health);
    match args.format {
        Format::Text => {
            outln!(
                "Plan for {} against {}:\n",
                file.display(),
                against(&prepared)
            );
            out!("{}", prepared.plan.render_text());
            if !paused.is_empty() {
                outln!("\nRuntime state (sync does not change it; `hooks resume ID` does):");
                paused.iter().for_each(|l| outln!("  {l}"));
            }
        }
        Format::Markdown => {
            let heading = format!(
                "Handler changes in `{}` against {}",
                file.display(),
                against(&prepared)
            );
            out!("{}", prepared.plan.render_markdown(&heading));
            if !paused.is_empty() {
                outln!("\n**Paused handlers** (runtime state; this sync does not change it):\n");
                paused.iter().for_each(|l| outln!("- {l}"));
            }
        }
        Format::Json => {
            let doc = serde_json::json!({
                "against": prepared.against(),
                "changes": !prepared.plan.is_empty(),
                "plan": prepared.plan,
                "paused": health.values().filter(|h| h.paused.is_some()).collect::<Vec<_>>(),
            });
            outln!("{doc:#}");
        }
    }
    Ok(if prepared.next.is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
