use std::process::ExitCode;

use hooks_local::bootstrap;

use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Creates the tables and queues from their single definition (for local
/// development; on AWS the stack creates them). What exists is left alone.
pub(crate) fn run(_args: Args) -> Outcome {
    let rt = remote::runtime()?;
    let lines = rt.block_on(async {
        let wiring = remote::wiring().await?;
        let lines = bootstrap(&wiring.sdk, &wiring.settings.names).await?;
        Ok::<_, Failure>(lines)
    })?;
    for l in lines {
        outln!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
