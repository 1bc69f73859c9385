use std::process::ExitCode;

use crate::failure::Outcome;

use hooks_core::events::Event;

use crate::output;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// One event: where it stands and what each handler did (from DynamoDB).
    Show(crate::commands::events_show::Args),
    /// Recent events, the most recently changed first (from DynamoDB).
    List(crate::commands::events_list::Args),
}

pub(crate) fn run(args: Args) -> Outcome {
    match args.command {
        Some(Sub::Show(a)) => return crate::commands::events_show::run(a),
        Some(Sub::List(a)) => return crate::commands::events_list::run(a),
        None => {}
    }
    if args.json {
        let list: Vec<_> = Event::ALL
            .iter()
            .map(|e| serde_json::json!({"event": e.as_str(), "group": e.group().as_str(), "description": e.description()}))
            .collect();
        outln!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = Event::ALL
        .iter()
        .map(|e| vec![e.as_str().to_owned(), e.description().to_owned()])
        .collect();
    out!("{}", output::table(&["EVENT", "MEANING"], &rows, &[40, 60]));
    outln!(
        "\nA handler may also listen to a whole group: clients.*, accounts.*, subscriptions.*, import.*"
    );
    Ok(ExitCode::SUCCESS)
}
