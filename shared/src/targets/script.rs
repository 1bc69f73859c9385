//! The script target: a command shipped with the bundle, run with the request
//! JSON on stdin; its stdout is the answer and exit code 0 means success. The
//! environment is cleared (only a fixed `PATH` and the configured variables
//! remain), and a timeout kills the script's whole process group.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

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
    /// Scripts in `scripts_dir`, no secrets (see [`ScriptOptions::with_secrets`]).
    pub fn new(scripts_dir: impl Into<PathBuf>) -> Self {
        ScriptOptions {
            scripts_dir: scripts_dir.into(),
            max_output_bytes: 256 * 1024,
            secrets: Secrets::default(),
        }
    }

    /// Secret references in the scripts' `env` tables resolve from `secrets`.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }
}

#[derive(Debug, Clone)]
pub struct ScriptRunner {
    opts: ScriptOptions,
}

impl ScriptRunner {
    /// The scripts folder is made absolute here, so that a relative one
    /// means the same whatever the working directory of a script.
    pub fn new(mut opts: ScriptOptions) -> Self {
        if let Ok(abs) = std::fs::canonicalize(&opts.scripts_dir)
            .or_else(|_| std::path::absolute(&opts.scripts_dir))
        {
            opts.scripts_dir = abs;
        }
        ScriptRunner { opts }
    }

    pub fn scripts_dir(&self) -> &Path {
        &self.opts.scripts_dir
    }

    /// Programs are scripts shipped with the bundle: paths inside the
    /// scripts folder (validation refuses anything else). Links are followed
    /// and the file they lead to must be inside the folder too.
    fn program(&self, name: &str) -> Result<PathBuf, CallError> {
        let path = self.opts.scripts_dir.join(name);
        let real = std::fs::canonicalize(&path).map_err(|e| {
            CallError::new(FailureKind::Config, format!("cannot start `{name}`: {e}"))
        })?;
        if !real.starts_with(&self.opts.scripts_dir) {
            return Err(CallError::new(
                FailureKind::Config,
                format!("`{name}` leads outside the scripts folder (through a link): refused"),
            ));
        }
        Ok(real)
    }

    #[tracing::instrument(skip_all, fields(handler.id = call.handler.id))]
    pub async fn call(&self, target: &ScriptTarget, call: &Call<'_>) -> Reply {
        let Some((program, args)) = target.command.split_first() else {
            return Reply::failed(CallError::new(FailureKind::Config, "empty command"));
        };
        let mut cmd = match self.command(program, args, target, call) {
            Ok(c) => c,
            Err(e) => return Reply::failed(e),
        };
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Reply::failed(CallError::new(
                    FailureKind::Config,
                    format!("cannot start `{program}`: {e}"),
                ));
            }
        };
        let cap = self.opts.max_output_bytes;
        run(child, call.body.clone(), call.timeout, cap)
            .await
            .reply(call.timeout, cap)
    }

    /// The command that runs `program` with `args`: in the scripts folder,
    /// in a process group of its own (so that a timeout kills all it
    /// started), with its environment cleared but for a fixed `PATH`, the
    /// call's trace context and the target's variables, secrets resolved.
    fn command(
        &self,
        program: &str,
        args: &[String],
        target: &ScriptTarget,
        call: &Call<'_>,
    ) -> Result<Command, CallError> {
        let mut cmd = Command::new(self.program(program)?);
        cmd.args(args)
            .env_clear()
            .env("PATH", SCRIPT_PATH)
            .envs(call.traceparent.map(|t| ("TRACEPARENT", t)))
            .current_dir(&self.opts.scripts_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (name, source) in &target.env {
            cmd.env(name, self.opts.secrets.value(source)?);
        }
        Ok(cmd)
    }
}

/// What a script's run left behind.
struct Run {
    /// How it ended; `None` when it did not finish within the timeout.
    waited: Option<std::io::Result<ExitStatus>>,
    /// Its stdout, at most the cap, and whether it wrote more; `None` when
    /// the pipe was still held open after the script exited.
    stdout: Option<(Bytes, bool)>,
    /// The start of its stderr.
    stderr: Bytes,
}

/// Runs a started script: feeds it `body`, reads its output (at most `cap`
/// bytes of stdout) and waits for it up to `timeout`; then kills whatever
/// is left in its process group.
async fn run(mut child: Child, body: Bytes, timeout: Duration, cap: usize) -> Run {
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let feed = tokio::spawn(feed(child.stdin.take(), body));
    let out = tokio::spawn(read_stdout(child.stdout.take(), cap, group));
    let err = tokio::spawn(read_stderr(child.stderr.take()));
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // The script has exited or timed out: whatever it started and left
    // behind in its process group goes too.
    if let Some(pgid) = group {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    if waited.is_err() {
        let _ = child.wait().await;
    }
    feed.abort();
    // The pipes close once the group is gone; a process that left the group
    // on purpose (setsid) and still holds stdout is not waited for.
    let grace = Duration::from_millis(500);
    let out = tokio::time::timeout(grace, out).await;
    let err = tokio::time::timeout(grace, err).await;
    Run {
        waited: waited.ok(),
        stdout: match out {
            Ok(Ok(o)) => Some(o),
            _ => None,
        },
        stderr: match err {
            Ok(Ok(b)) => b,
            _ => Bytes::new(),
        },
    }
}

impl Run {
    /// The script's answer: its stdout when it exited with 0; else a
    /// failure that says why (the timeout, a wait that failed, output over
    /// `cap`, a held pipe, or the exit code with the start of stderr).
    fn reply(self, timeout: Duration, cap: usize) -> Reply {
        let status = match self.waited {
            None => {
                return Reply::failed(CallError::new(
                    FailureKind::Timeout,
                    format!(
                        "script did not finish within {}; it and its children were killed",
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            Some(Err(e)) => {
                return Reply::failed(CallError::new(
                    FailureKind::Exit,
                    format!("waiting for the script failed: {e}"),
                ));
            }
            Some(Ok(status)) => status,
        };
        let stdout = match self.stdout {
            Some((_, true)) => {
                return Reply::failed(CallError::new(
                    FailureKind::TooLarge,
                    format!("script output larger than {cap} bytes"),
                ));
            }
            Some((b, false)) => b,
            None => {
                return Reply::failed(CallError::new(
                    FailureKind::Exit,
                    "the script exited but a process it started still holds its stdout",
                ));
            }
        };
        if status.success() {
            return Reply::ok(None, stdout);
        }
        let how = match status.code() {
            Some(code) => format!("script exited with code {code}"),
            None => "script was killed by a signal".to_owned(),
        };
        let message = match excerpt(&self.stderr, 512) {
            Some(text) => format!("{how}: {}", text.trim()),
            None => how,
        };
        Reply {
            status: None,
            body: stdout,
            error: Some(CallError::new(FailureKind::Exit, message)),
            declared_json: false,
        }
    }
}

/// Writes the request to the script's stdin. A script that does not read its
/// input closes the pipe early: fine.
async fn feed(stdin: Option<ChildStdin>, body: Bytes) {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    }
}

/// Reads stdout up to `cap`; a script that writes more is stopped (its whole
/// group), and the answer is marked as too large.
async fn read_stdout(pipe: Option<ChildStdout>, cap: usize, group: Option<Pid>) -> (Bytes, bool) {
    let out = read_capped(pipe, cap).await;
    if out.1
        && let Some(pgid) = group
    {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    out
}

/// Keeps the first 4 KiB of stderr for the log and drains the rest, so that a
/// chatty script is never stopped by a full or closed pipe.
async fn read_stderr(pipe: Option<ChildStderr>) -> Bytes {
    let Some(mut pipe) = pipe else {
        return Bytes::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    Bytes::from(kept)
}

const STDERR_KEPT: usize = 4096;

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
