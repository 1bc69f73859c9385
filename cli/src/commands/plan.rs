use std::process::ExitCode;

use hooks_core::store::short_hash;
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

/// Exit code: 0 no changes, 2 changes, 1 error (like `terraform plan -detailed-exitcode`).
pub(crate) fn run(args: Args) -> Outcome {
    let file = &args.common.file;
    // Exit 2 means "changes": every failure exits 1.
    let failed = |f: Failure| f.with_code(1);
    let config = output::load(file, args.common.scripts_dir.as_deref(), 1)?;
    let source = remote::source(file, None).map_err(failed)?;
    let rt = remote::runtime()?;
    let prepared = rt
        .block_on(async {
            let store = remote::wiring().await?.config_store();
            plan_against(&store, config, source).await
        })
        .map_err(Failure::from)?;
    match args.format {
        Format::Text => {
            outln!(
                "Plan for {} against {}:\n",
                file.display(),
                against(&prepared)
            );
            out!("{}", prepared.plan.render_text());
        }
        Format::Markdown => {
            let heading = format!(
                "Handler changes in `{}` against {}",
                file.display(),
                against(&prepared)
            );
            out!("{}", prepared.plan.render_markdown(&heading));
        }
        Format::Json => {
            let doc = serde_json::json!({
                "against": prepared.against(),
                "changes": !prepared.plan.is_empty(),
                "plan": prepared.plan,
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
