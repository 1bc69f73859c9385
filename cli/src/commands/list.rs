use std::process::ExitCode;

use hooks_core::config::{Handler, Phase, Status, TargetKind};
use hooks_core::events::EventPattern;

use hooks_core::store::ConfigStore;

use crate::FileArgs;
use crate::failure::{Failure, Outcome};
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The handlers file [default: handlers.toml, or $HOOKS_FILE].
    #[arg(value_name = "FILE")]
    path: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: FileArgs,
    /// Handlers that run for this event (`clients.create`), or for any event of a group (`clients.*`).
    #[arg(long)]
    event: Option<EventPattern>,
    /// Target type: http | script.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<TargetKind>,
    /// enabled | shadow | disabled | archived.
    #[arg(long)]
    status: Option<Status>,
    /// before | after.
    #[arg(long)]
    phase: Option<Phase>,
    /// One JSON array of the full handler definitions instead of a table.
    #[arg(long)]
    json: bool,
    /// Search the live revision in DynamoDB instead of the file.
    #[arg(long, conflicts_with = "path")]
    live: bool,
}

pub(crate) fn matches_event(h: &Handler, wanted: EventPattern) -> bool {
    match wanted {
        EventPattern::Exact(e) => h.listens_to(e),
        EventPattern::Group(g) => h.events.iter().any(|p| match p {
            EventPattern::Exact(e) => e.group() == g,
            EventPattern::Group(x) => *x == g,
        }),
    }
}

pub(crate) fn run(args: Args) -> Outcome {
    let config = if args.live {
        let rt = remote::runtime()?;
        let rev = rt
            .block_on(async { remote::wiring().await?.config_store().live().await })?
            .ok_or_else(|| {
                Failure::new("nothing is live yet: `hooks sync` creates the first revision")
            })?;
        eprintln!("live revision {}", rev.info.revision);
        rev.config
    } else {
        let file = args.path.clone().unwrap_or(args.common.file.clone());
        output::load(
            &file,
            args.common.scripts_dir.as_deref(),
            output::EXIT_USAGE,
        )?
    };
    let mut found: Vec<&Handler> = config
        .handlers
        .iter()
        .filter(|h| args.event.is_none_or(|e| matches_event(h, e)))
        .filter(|h| args.kind.is_none_or(|k| h.target.kind() == k))
        .filter(|h| args.status.is_none_or(|s| h.status == s))
        .filter(|h| args.phase.is_none_or(|p| h.phase == p))
        .collect();
    if args.event.is_some() {
        // The order they run in: before handlers first, then by priority and id.
        found.sort_by_key(|h| (h.phase != Phase::Before, h.priority, h.id));
    } else {
        found.sort_by_key(|h| h.id);
    }
    if args.json {
        let json = serde_json::to_string_pretty(&found).map_err(|e| Failure::new(e.to_string()))?;
        outln!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        outln!("no handlers match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|h| {
            vec![
                h.id.to_string(),
                h.priority.to_string(),
                h.name.clone(),
                match &h.when {
                    Some(w) => format!("{} when {w}", h.events_display()),
                    None => h.events_display(),
                },
                h.phase.to_string(),
                format!("{} {}", h.target.kind(), h.target.summary()),
                h.status.to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        output::table(
            &["ID", "PRIO", "NAME", "EVENT", "PHASE", "TARGET", "STATUS"],
            &rows,
            &[8, 5, 36, 44, 6, 56, 8]
        )
    );
    Ok(ExitCode::SUCCESS)
}
