use std::process::ExitCode;

use hooks_core::store::{ConfigStore, short_hash};

use crate::failure::Outcome;
use crate::{output, remote};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many revisions, newest first.
    #[arg(long, default_value = "20")]
    limit: usize,
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Outcome {
    let rt = remote::runtime()?;
    let (head, list) = rt.block_on(async {
        let store = remote::wiring().await?.config_store();
        let head = store.head().await?;
        let list = store.history(args.limit).await?;
        Ok::<_, crate::failure::Failure>((head, list))
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln!("No revisions yet: `hooks sync` creates the first.");
        return Ok(ExitCode::SUCCESS);
    }
    let live = head.map(|h| h.revision);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                format!(
                    "{}{}",
                    i.revision,
                    if Some(i.revision) == live {
                        " (live)"
                    } else {
                        ""
                    }
                ),
                i.synced_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                i.synced_by.clone(),
                i.git_commit
                    .as_deref()
                    .map(short_hash)
                    .unwrap_or("-")
                    .to_owned()
                    + if i
                        .git_commit
                        .as_deref()
                        .is_some_and(|c| c.ends_with("-dirty"))
                    {
                        "-dirty"
                    } else {
                        ""
                    },
                i.handlers.to_string(),
                i.summary.clone(),
                short_hash(&i.content_hash).to_owned(),
            ]
        })
        .collect();
    out!(
        "{}",
        output::table(
            &[
                "REVISION", "SYNCED", "BY", "COMMIT", "HANDLERS", "CHANGES", "HASH"
            ],
            &rows,
            &[16, 24, 24, 20, 8, 32, 12]
        )
    );
    Ok(ExitCode::SUCCESS)
}
