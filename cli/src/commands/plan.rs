use std::process::ExitCode;

use chrono::{DateTime, Utc};
use hooks_core::config::impact::{Impact, Recorded, impact};
use hooks_core::config::plan::HandlerChange;
use hooks_core::config::{Config, HandlerId};
use hooks_core::pause::{HandlerHealth, Health};
use hooks_core::store::{ConfigStore, short_hash};
use hooks_core::sync::{Prepared, plan_against};

use crate::FileArgs;
use crate::commands::logs::parse_since;
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
    /// Add what the change would have done to the recorded traffic: per
    /// changed handler, the events it would have been called for under the
    /// file and under the live config (no handler is called).
    #[arg(long)]
    impact: bool,
    /// With --impact: the period looked at (`7d`, `24h`, or an RFC 3339 time).
    #[arg(long, value_parser = parse_since, default_value = "7d", requires = "impact")]
    since: DateTime<Utc>,
    /// With --impact: at most this many events (the newest of the period).
    #[arg(long, default_value_t = 20_000, requires = "impact")]
    impact_limit: usize,
}

/// What the plan's changes do to the traffic recorded since `since`.
async fn impact_of(
    wiring: &hooks_core::wiring::Wiring,
    proposed: &Config,
    prepared: &Prepared,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<(Impact, String), Failure> {
    let live = wiring.config_store().live().await?;
    let (records, more) = wiring
        .log_store()
        .received(since, None, None, limit)
        .await?;
    let recorded: Vec<Recorded<'_>> = records
        .iter()
        .map(|r| Recorded {
            event: r.event.event.event,
            phase: r.phase(),
            data: &r.event.event.data,
        })
        .collect();
    let changed: Vec<(HandlerId, String)> = prepared
        .plan
        .handlers
        .iter()
        .map(|c| match c {
            HandlerChange::Create { id, name, .. }
            | HandlerChange::Update { id, name, .. }
            | HandlerChange::Delete { id, name } => (*id, name.clone()),
        })
        .collect();
    let period = format!(
        "since {}{}",
        since.format("%Y-%m-%d %H:%M UTC"),
        if more {
            format!(", the newest {limit} of them")
        } else {
            String::new()
        }
    );
    Ok((
        impact(
            live.as_ref().map(|r| &r.config),
            proposed,
            &changed,
            &recorded,
        ),
        period,
    ))
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
    let (prepared, health, impact) = rt
        .block_on(async {
            let wiring = remote::wiring().await?;
            let store = wiring.config_store();
            let health = store.head_and_health().await?.1;
            let prepared = plan_against(&store, config.clone(), source).await?;
            let impact = match args.impact {
                true => Some(
                    impact_of(&wiring, &config, &prepared, args.since, args.impact_limit).await?,
                ),
                false => None,
            };
            Ok::<_, Failure>((prepared, health, impact))
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
            if let Some((i, period)) = &impact {
                out!("\n{}", i.render_text(period));
            }
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
            if let Some((i, period)) = &impact {
                out!("{}", i.render_markdown(period));
            }
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
                "impact": impact.as_ref().map(|(i, _)| i),
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
