//! What the commands that talk to AWS share: the store, the runtime, where a
//! file comes from, and one-line errors.

use std::path::Path;
use std::process::{Command, ExitCode};

use hooks_core::store::StoreError;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::sync::{Source, SyncError};

/// A single-threaded runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The config store from the environment (`AWS_*`, `HOOKS_CONFIG_TABLE`).
pub(crate) async fn store() -> DynamoConfigStore {
    DynamoConfigStore::from_env().await
}

/// The event and log stores, from the environment (`AWS_*`, `HOOKS_*_TABLE`).
pub(crate) struct Stores {
    pub(crate) sdk: aws_config::SdkConfig,
    pub(crate) events: hooks_core::store::events::EventStore,
    pub(crate) logs: hooks_core::store::logs::LogStore,
}

pub(crate) async fn stores() -> Stores {
    let sdk = hooks_core::store::dynamodb::sdk_config().await;
    let endpoint = hooks_core::store::dynamodb::describe_endpoint(&sdk);
    let names = hooks_core::local::ResourceNames::from_env();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    Stores {
        events: hooks_core::store::events::EventStore::new(
            ddb.clone(),
            names.events_table,
            endpoint.clone(),
        ),
        logs: hooks_core::store::logs::LogStore::new(ddb, names.logs_table, endpoint),
        sdk,
    }
}

/// One line that says what went wrong and what to do.
pub(crate) fn report_store(e: &StoreError) -> ExitCode {
    let hint = match e {
        StoreError::Unreachable { .. } => {
            " — is the endpoint right (AWS_ENDPOINT_URL) and running? Locally, `make dev` or `make emulator` starts the emulator"
        }
        _ => "",
    };
    eprintln!("error: {e}{hint}");
    ExitCode::FAILURE
}

pub(crate) fn report_sync(e: &SyncError) -> ExitCode {
    match e {
        SyncError::Store(s) => report_store(s),
        SyncError::IdReused(_) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Who is syncing: `--by`, or `HOOKS_ACTOR`, `GITHUB_ACTOR`, `USER`.
pub(crate) fn actor(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| {
            ["HOOKS_ACTOR", "GITHUB_ACTOR", "USER"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The commit the file is at, `-dirty` when it has uncommitted changes;
/// `None` outside a git checkout.
pub(crate) fn git_commit(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let head = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let name = file.file_name()?;
    let dirty = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--"])
        .arg(name)
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// Reads the file's text and where it comes from.
pub(crate) fn source(file: &Path, by: Option<&str>) -> Result<Source, ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", file.display());
        ExitCode::from(crate::output::EXIT_USAGE)
    })?;
    Ok(Source {
        file: file.display().to_string(),
        text,
        git_commit: git_commit(file),
        synced_by: actor(by),
    })
}
