//! `hooks list`: the handlers of the file or of the live revision, filtered
//! by event, target type, status and phase.

use std::process::ExitCode;

use hooks_core::config::{Config, Handler, Phase, Status, TargetKind};
use hooks_core::events::EventPattern;
use hooks_core::pause::Health;
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

/// Whether `h` listens to `wanted`: to that event, or, for a group, to any
/// event of it.
pub(crate) fn matches_event(h: &Handler, wanted: EventPattern) -> bool {
    match wanted {
        EventPattern::Exact(e) => h.listens_to(e),
        EventPattern::Group(g) => h.events.iter().any(|p| match p {
            EventPattern::Exact(e) => e.group() == g,
            EventPattern::Group(x) => *x == g,
        }),
    }
}

/// Lists the handlers that pass the filters, as a table or as JSON.
pub(crate) fn run(args: Args) -> Outcome {
    let (config, health) = if args.live {
        live()?
    } else {
        let file = args.path.clone().unwrap_or(args.common.file.clone());
        let config = output::load(
            &file,
            args.common.scripts_dir.as_deref(),
            output::EXIT_USAGE,
        )?;
        (config, Health::new())
    };
    let found = select(&config.handlers, &args);
    if args.json {
        print_json(&found, &health)?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        outln!("no handlers match");
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&found, &health);
    print_paused(&health);
    Ok(ExitCode::SUCCESS)
}

/// The live revision's config, and each handler's runtime state (failures
/// in a row, pause).
fn live() -> Result<(Config, Health), Failure> {
    let rt = remote::runtime()?;
    let (rev, h) = rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let h = store.head_and_health().await?.1;
        Ok::<_, Failure>((store.live().await?, h))
    })?;
    let rev = rev.ok_or_else(|| {
        Failure::new("nothing is live yet: `hooks sync` creates the first revision")
    })?;
    eprintln!("live revision {}", rev.info.revision);
    Ok((rev.config, h))
}

/// The handlers that pass every filter: for an event, in the order they
/// run for it (before handlers first, then by priority and id), else by id.
fn select<'a>(handlers: &'a [Handler], args: &Args) -> Vec<&'a Handler> {
    let mut found: Vec<&Handler> = handlers
        .iter()
        .filter(|h| args.event.is_none_or(|e| matches_event(h, e)))
        .filter(|h| args.kind.is_none_or(|k| h.target.kind() == k))
        .filter(|h| args.status.is_none_or(|s| h.status == s))
        .filter(|h| args.phase.is_none_or(|p| h.phase == p))
        .collect();
    if args.event.is_some() {
        found.sort_by_key(|h| (h.phase != Phase::Before, h.priority, h.id));
    } else {
        found.sort_by_key(|h| h.id);
    }
    found
}

/// One JSON array of the full definitions. With --live, each handler
/// carries its runtime state (`health`).
fn print_json(found: &[&Handler], health: &Health) -> Result<(), Failure> {
    let docs: Vec<serde_json::Value> = found
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).unwrap_or_default();
            if let (Some(state), Some(o)) = (health.get(&h.id), v.as_object_mut()) {
                o.insert(
                    "health".into(),
                    serde_json::to_value(state).unwrap_or_default(),
                );
            }
            v
        })
        .collect();
    let json = serde_json::to_string_pretty(&docs).map_err(|e| Failure::new(e.to_string()))?;
    outln!("{json}");
    Ok(())
}

/// The table, one handler a row; its status says whether it is paused or
/// failing.
fn print_table(found: &[&Handler], health: &Health) {
    let rows: Vec<Vec<String>> = found.iter().map(|h| row(h, health)).collect();
    out!(
        "{}",
        output::table(
            &["ID", "PRIO", "NAME", "EVENT", "PHASE", "TARGET", "STATUS"],
            &rows,
            &[8, 5, 36, 44, 6, 56, 20]
        )
    );
}

/// A handler's row of the table.
fn row(h: &Handler, health: &Health) -> Vec<String> {
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
        match health.get(&h.id) {
            Some(s) if s.paused.is_some() => format!("{} PAUSED", h.status),
            Some(s) if s.failures > 0 => format!("{} ({} failing)", h.status, s.failures),
            _ => h.status.to_string(),
        },
    ]
}

/// The paused handlers, why, and how to resume them (nothing when none is).
fn print_paused(health: &Health) {
    let paused = crate::commands::plan::paused_lines(health);
    if !paused.is_empty() {
        outln!("");
        paused.iter().for_each(|l| outln!("{l}"));
        outln!("(`hooks resume ID` resumes one; its waiting events then flow in order)");
    }
}
