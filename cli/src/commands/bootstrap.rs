use std::process::ExitCode;

use hooks_core::store::dynamodb::{Created, create_tables, describe_endpoint, sdk_config};
use hooks_core::store::schema::TABLES;

use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Creates the tables from their single definition (for local development;
/// on AWS the stack creates them). Tables that exist are left alone.
pub(crate) fn run(_args: Args) -> ExitCode {
    let rt = match remote::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let config = sdk_config().await;
        let endpoint = describe_endpoint(&config);
        let client = aws_sdk_dynamodb::Client::new(&config);
        let tables: Vec<_> = TABLES.iter().map(|t| (*t, t.name_from_env())).collect();
        match create_tables(&client, &endpoint, &tables).await {
            Ok(done) => {
                for d in done {
                    match d {
                        Created::Created(name) => outln!("created table {name}"),
                        Created::Existed(name) => outln!("table {name} exists"),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => remote::report_store(&e),
        }
    })
}
