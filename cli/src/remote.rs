//! What the commands that talk to AWS share: the store, the runtime, where a
//! file comes from, and one-line errors.

use std::path::Path;
use std::process::Command;

use std::sync::OnceLock;

use hooks_core::settings::{Env, Settings};
use hooks_core::sync::Source;
use hooks_core::wiring::Wiring;
use hooks_core::wiring::WiringError;

use crate::failure::Failure;

/// A single-threaded runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}

/// The environment, captured once when the command starts.
static ENV: OnceLock<Env> = OnceLock::new();

/// Keeps the environment `main` captured, for [`wiring`].
pub(crate) fn keep_env(env: Env) {
    let _ = ENV.set(env);
}

pub(crate) fn env() -> &'static Env {
    ENV.get_or_init(Env::default)
}

/// Settings and the SDK, from the captured environment (`AWS_*`, `HOOKS_*`):
/// the same wiring as the functions'.
pub(crate) async fn wiring() -> Result<Wiring, WiringError> {
    let settings = Settings::from_env(env())?;
    Wiring::load(settings).await
}

/// Who is syncing: `--by`, or `HOOKS_ACTOR`, `GITHUB_ACTOR`, `USER`.
pub(crate) fn actor(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| {
            ["HOOKS_ACTOR", "GITHUB_ACTOR", "USER"]
                .iter()
                .find_map(|v| env().get(v).map(str::to_owned))
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
pub(crate) fn source(file: &Path, by: Option<&str>) -> Result<Source, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    Ok(Source {
        file: file.display().to_string(),
        text,
        git_commit: git_commit(file),
        synced_by: actor(by),
    })
}
