use std::process::ExitCode;

use crate::FileArgs;
use crate::failure::Outcome;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The handlers file [default: handlers.toml, or $HOOKS_FILE].
    #[arg(value_name = "FILE")]
    path: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: FileArgs,
}

pub(crate) fn run(args: Args) -> Outcome {
    let file = args.path.unwrap_or(args.common.file);
    let config = output::load(&file, args.common.scripts_dir.as_deref(), 1)?;
    let enabled = config
        .handlers
        .iter()
        .filter(|h| h.status == hooks_core::config::Status::Enabled)
        .count();
    let shadow = config
        .handlers
        .iter()
        .filter(|h| h.status == hooks_core::config::Status::Shadow)
        .count();
    outln!(
        "{}: valid — {} handlers ({} enabled{})",
        file.display(),
        config.handlers.len(),
        enabled,
        if shadow > 0 {
            format!(", {shadow} shadow")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
