//! `hooks try`: one event through the file's handlers from this machine,
//! as dispatch would run it (the handlers are called for real), with
//! nothing recorded.

use std::process::ExitCode;

use chrono::Utc;
use hooks_core::chain::{
    AfterOutcome, CallRecord, Progress, Unguarded, Verdict, run_after, run_before,
};
use hooks_core::config::{Config, Handler, Phase};
use hooks_core::events::Event;
use hooks_core::protocol::{Data, EventEnvelope};
use hooks_core::settings::{SecretSource, Settings};
use hooks_core::targets::Targets;
use hooks_core::wiring::Wiring;
use serde_json::{Value, json};

use crate::FileArgs;
use crate::failure::{Failure, Outcome};
use crate::output::{self, EXIT_USAGE};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The event, e.g. clients.create (`hooks events` lists them).
    event: Event,
    /// The entity's fields: a JSON object, `@path/to/file.json`, or `@-` for stdin.
    #[arg(long, required_unless_present = "example", conflicts_with = "example")]
    data: Option<String>,
    /// Data made from the event type's schema (its examples, defaults and
    /// types) instead of --data.
    #[arg(long)]
    example: bool,
    /// before (ask, may forbid) | after (notify).
    #[arg(long, default_value = "after")]
    phase: Phase,
    /// The event id sent to handlers [default: a new one].
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    common: FileArgs,
    /// One JSON document (verdict, reason, data, per-handler records) instead of text.
    #[arg(long)]
    json: bool,
}

/// The `--data` argument's JSON object: given as it is, read from a file
/// (`@path`) or from stdin (`@-`).
pub(crate) fn read_data(arg: &str) -> Result<Data, String> {
    let text = match arg.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("cannot read stdin: {e}"))?,
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => arg.to_owned(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("--data must be a JSON object, e.g. '{\"client_id\": 42}'".to_owned()),
        Err(e) => Err(format!("--data is not valid JSON: {e}")),
    }
}

/// Runs the event through the file's chain for its phase, as dispatch
/// would, and prints what each handler answered and the verdict; exits 0
/// when the verdict is allow.
pub(crate) fn run(args: Args) -> Outcome {
    let config = output::load(
        &args.common.file,
        args.common.scripts_dir.as_deref(),
        EXIT_USAGE,
    )?;
    let data = data_of(&args, &config)?;
    let settings = settings(&args)?;
    let event = envelope(&args, data);
    let runtime = remote::runtime()?;
    let targets = runtime.block_on(targets(settings))?;
    let chain = config.chain_for(event.event, args.phase);
    let report = runtime.block_on(run_chain(&targets, &chain, &config, &event, args.phase));
    if args.json {
        print_json(&event, args.phase, &report);
    } else {
        print_text(&event, args.phase, chain.len(), &report);
    }
    Ok(if report.verdict == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--data`, or the example of the event type's schema; either checked
/// against the schema as ingest checks it (data that ingest would refuse
/// is refused here, naming each problem).
fn data_of(args: &Args, config: &Config) -> Result<Data, Failure> {
    let data = match &args.data {
        Some(d) => read_data(d).map_err(Failure::usage)?,
        None => {
            let Some(schema) = config.schemas.by_event.get(&args.event) else {
                return Err(Failure::usage(format!(
                    "{} has no schema in this file's [schemas]: give --data",
                    args.event
                )));
            };
            match hooks_core::config::schemas::example(schema) {
                Value::Object(m) => m,
                _ => {
                    return Err(Failure::usage(format!(
                        "the schema of {} does not describe an object: give --data",
                        args.event
                    )));
                }
            }
        }
    };
    let compiled = hooks_core::config::schemas::Compiled::new(&config.schemas)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let problems = compiled.check(args.event, &data);
    if !problems.is_empty() {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("  {}: {} (schema rule {})", p.path, p.message, p.rule))
            .collect();
        return Err(Failure::usage(format!(
            "the data does not fit the schema of {} (ingest would refuse it with 422):\n{}",
            args.event,
            list.join("\n")
        )));
    }
    Ok(data)
}

/// The settings from this environment, with the scripts' folder of the
/// file (or `--scripts-dir`).
fn settings(args: &Args) -> Result<Settings, Failure> {
    let mut settings =
        Settings::from_env(remote::env()).map_err(|e| Failure::usage(e.to_string()))?;
    settings.scripts_dir = args
        .common
        .scripts_dir
        .clone()
        .unwrap_or_else(|| hooks_core::config::scripts_dir_of(&args.common.file));
    Ok(settings)
}

/// The event sent to the handlers: `--id` or a new one, occurring now, at
/// the root of a new trace.
fn envelope(args: &Args, data: Data) -> EventEnvelope {
    EventEnvelope {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| format!("try-{}", uuid::Uuid::now_v7())),
        event: args.event,
        occurred_at: Utc::now(),
        data,
        trace: Some(hooks_core::trace::TraceParent::new_root()),
    }
}

/// The targets as the functions build them: secrets from the Secrets
/// Manager secret when HOOKS_SECRETS_ARN names one (`make dev` prints it),
/// else from this environment.
async fn targets(settings: Settings) -> Result<Targets, Failure> {
    let wiring = match settings.secrets {
        SecretSource::Manager { .. } => remote::wiring().await?,
        SecretSource::Environment(_) => {
            Wiring::new(settings, aws_config::SdkConfig::builder().build())
        }
    };
    let secrets = wiring.secrets().await?;
    Ok(wiring.targets(&secrets)?)
}

/// Runs `chain` on `event` as its phase does: before handlers within the
/// decision timeout; after handlers in order, nothing guarding them.
async fn run_chain(
    targets: &Targets,
    chain: &[&Handler],
    config: &Config,
    event: &EventEnvelope,
    phase: Phase,
) -> Report {
    match phase {
        Phase::Before => {
            let d = run_before(
                targets,
                chain,
                &config.defaults,
                event,
                config.defaults.decision_timeout,
            )
            .await;
            let verdict = match d.verdict {
                Verdict::Allow => "allow",
                Verdict::Forbid => "forbid",
            };
            Report {
                verdict,
                reason: d.reason,
                data: d.data,
                handlers: d.handlers,
            }
        }
        Phase::After => {
            let run = run_after(
                targets,
                chain,
                &config.defaults,
                event,
                Progress::new(event.data.clone()),
                None,
                &mut Unguarded,
            )
            .await;
            let (verdict, reason) = after_verdict(&run.outcome);
            Report {
                verdict,
                reason,
                data: run.progress.data,
                handlers: run.handlers,
            }
        }
    }
}

/// How an after chain ended, as a verdict and why: what dispatch would do
/// with the event next.
fn after_verdict(outcome: &AfterOutcome) -> (&'static str, Option<String>) {
    match outcome {
        AfterOutcome::Completed => ("allow", None),
        AfterOutcome::Forbidden { reason, .. } => ("forbid", Some(reason.clone())),
        AfterOutcome::Blocked {
            handler, retryable, ..
        } => (
            "failed",
            Some(if *retryable {
                format!("handler {handler} failed; the event would be retried from it")
            } else {
                format!(
                    "handler {handler} failed for good (not retryable); the event would be dead-lettered"
                )
            }),
        ),
        AfterOutcome::Paused { next } => ("failed", Some(format!("paused before handler {next}"))),
        AfterOutcome::HandlerPaused { reason, .. } => {
            ("failed", Some(format!("the event would wait: {reason}")))
        }
    }
}

/// What the chain did.
struct Report {
    verdict: &'static str,
    reason: Option<String>,
    data: Data,
    handlers: Vec<CallRecord>,
}

/// The report as one JSON document (`--json`).
fn print_json(event: &EventEnvelope, phase: Phase, report: &Report) {
    let doc = json!({
        "event_id": event.id,
        "event": event.event,
        "phase": phase,
        "verdict": report.verdict,
        "reason": report.reason,
        "data": report.data,
        "handlers": report.handlers,
    });
    outln!("{doc:#}");
}

/// The report as text: a line a handler, then the verdict and the data.
fn print_text(event: &EventEnvelope, phase: Phase, selected: usize, r: &Report) {
    outln!("{} ({phase}) — event id {}", event.event, event.id);
    if selected == 0 {
        outln!("no enabled {phase} handler listens to {}", event.event);
    }
    for h in &r.handlers {
        let status = h
            .status_code
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".to_owned());
        let mut line = format!(
            "  #{:<4} {:<36} {:<10} {:>4} {:>6} ms",
            h.handler_id,
            h.handler_name,
            h.outcome.as_str(),
            status,
            h.duration_ms
        );
        if let Some(res) = h.resolution {
            line.push_str(&format!(
                "  ({})",
                serde_json::to_value(res)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ));
        }
        outln!("{line}");
        if let Some(e) = &h.error {
            outln!("         error: {e}");
        }
        if let Some(reason) = &h.reason {
            outln!("         reason: {reason}");
        }
    }
    outln!("verdict: {}", r.verdict);
    if let Some(reason) = &r.reason {
        outln!("reason: {reason}");
    }
    outln!(
        "data: {}",
        serde_json::to_string_pretty(&r.data).unwrap_or_default()
    );
}
