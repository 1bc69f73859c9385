use std::process::ExitCode;

use hooks_local::bootstrap;

use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Creates the tables and queues from their single definition (for local
/// development; on AWS the stack creates them). What exists is left alone.
pub(crate) fn run(_args: Args) -> ExitCode {
    let rt = match remote::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let wiring = match remote::wiring().await {
            Ok(w) => w,
            Err(e) => return remote::report_store(&e),
        };
        match bootstrap(&wiring.sdk, &wiring.settings.names).await {
            Ok(lines) => {
                for l in lines {
                    outln!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => remote::report_store(&e),
        }
    })
}
