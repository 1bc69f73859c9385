//! `lambda-sandbox <function binary> [arguments]`: runs one function
//! instance as Lambda keeps it (see `hooks_local::sandbox`). cargo runs it as
//! the runner of `cargo run` under `cargo lambda watch`. The local stack
//! also starts each `cargo lambda watch` under it, as its guard
//! (`--guard <pid> <program> [arguments]`).

use std::process::ExitCode;

use hooks_local::sandbox;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == sandbox::EXEC_FLAG) {
        // The instance side: `--exec-instance <sandbox pid> <binary> [args]`.
        let parent = args
            .get(2)
            .and_then(|p| p.to_str())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let Some(program) = args.get(3) else {
            eprintln!("lambda-sandbox: no function binary");
            return ExitCode::FAILURE;
        };
        eprintln!(
            "lambda-sandbox: {}",
            sandbox::exec_instance(parent, program, &args[4..])
        );
        return ExitCode::FAILURE;
    }
    if args.get(1).is_some_and(|a| a == sandbox::GUARD_FLAG) {
        let parent = args
            .get(2)
            .and_then(|p| p.to_str())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let Some(program) = args.get(3) else {
            eprintln!("lambda-sandbox: nothing to guard");
            return ExitCode::FAILURE;
        };
        return match sandbox::guard(parent, program, &args[4..]) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("lambda-sandbox: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match sandbox::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lambda-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lambda-sandbox: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread: the instance's parent-death signal follows the thread
    // that started it, which must live as long as the sandbox.
    match runtime.block_on(sandbox::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lambda-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}
