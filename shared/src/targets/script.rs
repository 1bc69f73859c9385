//! The script target: a command shipped with the bundle, run with the request
//! JSON on stdin; its stdout is the answer and exit code 0 means success. The
//! environment is cleared (only a fixed `PATH` and the configured variables
//! remain), and a timeout kills the script's whole process group.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Call, CallError, FailureKind, Reply, Secrets, excerpt};
use crate::config::ScriptTarget;

/// The `PATH` a script sees (the caller's own `PATH` is not passed on).
pub const SCRIPT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Relative program paths (`scripts/x.sh`) resolve against this folder,
    /// which is also the script's working directory.
    pub scripts_dir: PathBuf,
    /// Longest stdout read; a longer one is a failure.
    pub max_output_bytes: usize,
    pub secrets: Secrets,
}

impl ScriptOptions {
    pub fn new(scripts_dir: impl Into<PathBuf>) -> Self {
        ScriptOptions {
            scripts_dir: scripts_dir.into(),
            max_output_bytes: 256 * 1024,
            secrets: Secrets::from_env(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScriptRunner {
    opts: ScriptOptions,
}

impl ScriptRunner {
    pub fn new(opts: ScriptOptions) -> Self {
        ScriptRunner { opts }
    }

    pub fn scripts_dir(&self) -> &Path {
        &self.opts.scripts_dir
    }

    fn program(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_relative() && name.contains('/') {
            self.opts.scripts_dir.join(p)
        } else {
            p.to_owned()
        }
    }

    #[tracing::instrument(skip_all, fields(handler.id = call.handler.id))]
    pub async fn call(&self, target: &ScriptTarget, call: &Call<'_>) -> Reply {
        let Some((program, args)) = target.command.split_first() else {
            return Reply::failed(CallError::new(FailureKind::Config, "empty command"));
        };
        let mut cmd = Command::new(self.program(program));
        cmd.args(args)
            .env_clear()
            .env("PATH", SCRIPT_PATH)
            .current_dir(&self.opts.scripts_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (name, source) in &target.env {
            match self.opts.secrets.value(source) {
                Ok(v) => {
                    cmd.env(name, v);
                }
                Err(e) => return Reply::failed(e),
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Reply::failed(CallError::new(
                    FailureKind::Config,
                    format!("cannot start `{program}`: {e}"),
                ));
            }
        };
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let cap = self.opts.max_output_bytes;
        let body = call.body.clone();
        let run = async {
            let feed = async {
                if let Some(mut stdin) = stdin {
                    // A script that does not read its input closes the pipe early: fine.
                    let _ = stdin.write_all(&body).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let read_out = async {
                let out = read_capped(stdout, cap).await;
                if out.1
                    && let Some(pgid) = group
                {
                    // Stop a script that keeps writing: its stderr then ends too.
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                out
            };
            let (_, out, err) = tokio::join!(feed, read_out, read_capped(stderr, 4096));
            (out, err)
        };
        let outcome = tokio::time::timeout(call.timeout, async {
            let (out, err) = run.await;
            if out.1 {
                return Err(CallError::new(
                    FailureKind::TooLarge,
                    format!("script output larger than {cap} bytes"),
                ));
            }
            let status = child.wait().await.map_err(|e| {
                CallError::new(
                    FailureKind::Exit,
                    format!("waiting for the script failed: {e}"),
                )
            })?;
            Ok((status, out.0, err.0))
        })
        .await;
        // Whatever happened, nothing the script started outlives the call.
        if let Some(pgid) = group {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        match outcome {
            Err(_) => {
                let _ = child.wait().await;
                Reply::failed(CallError::new(
                    FailureKind::Timeout,
                    format!(
                        "script did not finish within {}; it and its children were killed",
                        humantime::format_duration(call.timeout)
                    ),
                ))
            }
            Ok(Err(e)) => {
                let _ = child.wait().await;
                Reply::failed(e)
            }
            Ok(Ok((status, out, err))) if status.success() => {
                let _ = err;
                Reply::ok(None, out)
            }
            Ok(Ok((status, out, err))) => {
                let how = match status.code() {
                    Some(code) => format!("script exited with code {code}"),
                    None => "script was killed by a signal".to_owned(),
                };
                let message = match excerpt(&err, 512) {
                    Some(stderr) => format!("{how}: {}", stderr.trim()),
                    None => how,
                };
                Reply {
                    status: None,
                    body: out,
                    error: Some(CallError::new(FailureKind::Exit, message)),
                }
            }
        }
    }
}

/// Reads at most `cap` bytes; says whether there was more.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> (Bytes, bool) {
    let Some(pipe) = pipe else {
        return (Bytes::new(), false);
    };
    let mut buf = Vec::new();
    let mut limited = pipe.take(cap as u64 + 1);
    // A read error ends the output; the exit status tells the rest.
    let _ = limited.read_to_end(&mut buf).await;
    let over = buf.len() > cap;
    buf.truncate(cap);
    (Bytes::from(buf), over)
}
