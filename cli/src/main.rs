//! `hooks`: handlers.toml as code — validate it, search it, try it.

/// `print!` that ends quietly when the reader has gone (`hooks list | head`).
macro_rules! out {
    ($($t:tt)*) => { $crate::output::emit(&format!($($t)*)) };
}

/// `println!` that ends quietly when the reader has gone.
macro_rules! outln {
    ($($t:tt)*) => {{
        let mut line = format!($($t)*);
        line.push('\n');
        $crate::output::emit(&line)
    }};
}

mod commands;
mod console;
mod examples;
mod failure;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provisioning Hooks: call softswitches, gateways and CRMs when billing changes.
#[derive(Debug, Parser)]
#[command(name = "hooks", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a handlers file; print every problem with its place and a fix.
    ///
    /// Exit code: 0 valid, 1 invalid, 2 the file cannot be read.
    Validate(commands::validate::Args),
    /// Search the handlers (the "advanced search"): by event, target type, status, phase.
    List(commands::list::Args),
    /// Run the chain of one event for real against the configured endpoints.
    ///
    /// Exit code: 0 allowed / every handler done, 1 forbidden or a handler
    /// failure stopped the chain, 2 the event or the file is invalid.
    Try(commands::try_::Args),
    /// The event catalogue; `hooks events show ID`: one event's state and handler calls.
    Events(commands::events::Args),
    /// What `sync` would change, handler by handler, against the live revision.
    ///
    /// Exit code: 0 no changes, 2 changes, 1 error.
    Plan(commands::plan::Args),
    /// Make the file the live config: a new revision, switched to atomically.
    Sync(commands::sync::Args),
    /// The config revisions, newest first.
    History(commands::history::Args),
    /// Make an earlier revision's content live again: a new revision, switched to as `sync` does.
    Rollback(commands::rollback::Args),
    /// Serve the operator console: handlers, execution log, events, revisions, queue (read-only).
    Console(commands::console::Args),
    /// Create the tables and queues from their definition (local development).
    Bootstrap(commands::bootstrap::Args),
    /// Send an event (or ask for a decision) as billing does: signed, over HTTPS.
    Send(commands::send::Args),
    /// Run the whole system locally: emulator, functions under cargo lambda watch, example endpoints.
    Dev(commands::dev::Args),
    /// The execution log: every handler call, filtered.
    Logs(commands::logs::Args),
    /// Put events back on the queue: one by id, or the dead-lettered ones.
    Replay(commands::replay::Args),
    /// Pause a handler by hand: its events wait (in order, attempts untouched) until `hooks resume`.
    Pause(commands::pause::Args),
    /// Resume a paused handler (paused by hand or after repeated failures).
    Resume(commands::pause::Args),
}

/// Where the handlers file is, shared by the commands that read it.
#[derive(Debug, Clone, clap::Args)]
struct FileArgs {
    /// The handlers file.
    #[arg(
        long = "file",
        short = 'f',
        env = "HOOKS_FILE",
        default_value = "handlers.toml"
    )]
    file: PathBuf,
    /// Where relative script paths are found [default: the file's folder].
    #[arg(long, env = "HOOKS_SCRIPTS_DIR")]
    scripts_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one read of the environment (clap reads its own arguments' variables).
    remote::keep_env(hooks_core::settings::Env::capture());
    output::init_tracing();
    let outcome = match cli.command {
        Command::Validate(a) => commands::validate::run(a),
        Command::List(a) => commands::list::run(a),
        Command::Try(a) => commands::try_::run(a),
        Command::Events(a) => commands::events::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Sync(a) => commands::sync::run(a),
        Command::History(a) => commands::history::run(a),
        Command::Rollback(a) => commands::rollback::run(a),
        Command::Console(a) => commands::console::run(a),
        Command::Bootstrap(a) => commands::bootstrap::run(a),
        Command::Send(a) => commands::send::run(a),
        Command::Dev(a) => commands::dev::run(a),
        Command::Logs(a) => commands::logs::run(a),
        Command::Pause(a) => commands::pause::run(a, true),
        Command::Resume(a) => commands::pause::run(a, false),
        Command::Replay(a) => commands::replay::run(a),
    };
    outcome.unwrap_or_else(failure::Failure::report)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
