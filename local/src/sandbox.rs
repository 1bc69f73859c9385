//! One function instance's execution environment, as Lambda keeps it.
//!
//! `cargo lambda watch` starts each instance with `cargo run`; cargo runs it
//! through this program (cargo's `runner` setting, which [`crate::run`]
//! sets), which stands between the instance and cargo-lambda's runtime API
//! and does what Lambda does and cargo-lambda 1.9.2 does not:
//! - **an instance that dies is replaced, alone**: the invocation it was
//!   answering ends with `Runtime.ExitError` (the invoker gets an error, as
//!   on Lambda), a new instance starts, and the watcher and the function's
//!   other instances go on (cargo-lambda would keep counting the dead
//!   instance, and the invocation it took would hang);
//! - **an invocation past the function's timeout is killed**: the instance
//!   is killed at the deadline, the invocation ends with `Sandbox.Timedout`,
//!   and a new instance starts;
//! - **the deadline the function sees is the template's**: the
//!   `Lambda-Runtime-Deadline-Ms` header is now + the function's timeout
//!   (cargo-lambda sends a constant that lies in 1970);
//! - **nothing outlives its watcher**: the instance dies with this program
//!   (`PR_SET_PDEATHSIG`, kept across `exec`); this program ends itself when
//!   its parent process (the watcher: `cargo run` execs its runner) is gone
//!   or the runtime API stops answering, and the watcher kills every sandbox
//!   it registered when it stops. (Not the parent-death signal here: it
//!   follows the parent's *thread*, and the watcher starts instances from
//!   threads that come and go.)
//!
//! The sandbox itself takes the invocations from cargo-lambda, one when its
//! instance asks for one, on a connection that outlives the instance: one
//! taken for an instance that died before it received it goes to the
//! replacement (it never reached any code); one that an instance received is
//! never given twice.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The function's timeout in milliseconds (set by the watcher).
pub const TIMEOUT_VAR: &str = "HOOKS_SANDBOX_TIMEOUT_MS";
/// The folder where each sandbox writes its pid, so that its watcher can
/// stop it (set by the watcher).
pub const REGISTRY_VAR: &str = "HOOKS_SANDBOX_DIR";
/// How a replaced instance shows in the watcher's output (counted by
/// [`crate::run::Running::restarts`]).
pub const REPLACED: &str = "lambda-sandbox: replaced the instance";
/// The argument with which the sandbox runs itself to become the instance
/// (see [`exec_instance`]).
pub const EXEC_FLAG: &str = "--exec-instance";

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE: &str = "lambda-runtime-deadline-ms";
/// The largest body relayed either way (Lambda's synchronous payload limit
/// is 6 MB).
const MAX_BODY: usize = 16 << 20;
/// How often the sandbox looks at its instance, the deadlines and the
/// runtime API.
const TICK: Duration = Duration::from_millis(50);
/// Failed connections to the runtime API, one per second, after which the
/// watcher is taken for gone and the sandbox ends.
const API_GONE_AFTER: u32 = 3;
/// An instance that dies sooner than this after it started is replaced only
/// after this long (an instance that cannot start does not spin).
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// What a sandbox runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// cargo-lambda's runtime API (`http://host:port/prefix`).
    pub upstream: String,
    pub timeout: Duration,
    /// The function's binary and its arguments.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub registry: Option<PathBuf>,
}

impl Config {
    /// From this program's arguments (`lambda-sandbox <binary> [args]`, as
    /// cargo's runner) and environment.
    pub fn from_env() -> Result<Config, String> {
        let mut args = std::env::args_os().skip(1);
        let program = args
            .next()
            .map(PathBuf::from)
            .ok_or("usage: lambda-sandbox <function binary> [arguments]")?;
        let upstream = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set: run under cargo lambda watch")?;
        let timeout = std::env::var(TIMEOUT_VAR)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{TIMEOUT_VAR} must hold the function's timeout in ms"))?;
        Ok(Config {
            upstream,
            timeout,
            program,
            args: args.collect(),
            registry: std::env::var_os(REGISTRY_VAR).map(PathBuf::from),
        })
    }
}

/// The instance side of the sandbox: dies with the sandbox, then becomes
/// the function (the parent-death signal is kept across `exec`). Returns
/// only on failure.
pub fn exec_instance(parent: u32, program: &OsString, args: &[OsString]) -> String {
    use std::os::unix::process::CommandExt;
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return format!("cannot tie the instance to its sandbox: {e}");
    }
    // The sandbox may have died before the signal was armed.
    if std::os::unix::process::parent_id() != parent {
        return "the sandbox is gone".to_owned();
    }
    let e = std::process::Command::new(program).args(args).exec();
    format!("cannot start {}: {e}", program.to_string_lossy())
}

/// The flag of the watcher's guard: `lambda-sandbox --guard <parent pid>
/// <program> [args]` (see [`guard`]).
pub const GUARD_FLAG: &str = "--guard";

/// How often the guard looks for its parent.
const GUARD_TICK: Duration = Duration::from_millis(250);

/// Runs `program` (cargo-lambda's watcher) and, if the process that started
/// the guard goes away without stopping it (`hooks dev` or a test killed
/// outright, whose clean-up never ran), ends the guard's process group (the
/// watcher's: the guard leads it) and the sandboxes in the registry, as a
/// clean stop does. Without it a killed `hooks dev` left its functions
/// running, reparented to PID 1. Returns the program's exit code.
pub fn guard(parent: u32, program: &OsString, args: &[OsString]) -> Result<i32, String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.to_string_lossy()))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code().unwrap_or(1)),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch {}: {e}", program.to_string_lossy())),
        }
        if std::os::unix::process::parent_id() != parent {
            if let Some(registry) = std::env::var_os(REGISTRY_VAR) {
                kill_registered(Path::new(&registry));
            }
            // The group's leader is this process: it ends with it.
            let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
            return Ok(1);
        }
        std::thread::sleep(GUARD_TICK);
    }
}

/// Kills every sandbox whose pid is registered in `registry` and forgets
/// them (an instance dies with its sandbox).
pub fn kill_registered(registry: &Path) {
    for entry in std::fs::read_dir(registry).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if let Some(pid) = name.to_str().and_then(|p| p.parse::<i32>().ok())
            && is_sandbox(pid)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Whether `pid` is a sandbox still (not a process that took its pid since).
fn is_sandbox(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("lambda-sandbox"))
}

/// Runs the sandbox until the runtime API goes away.
pub async fn run(config: Config) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot listen: {e}"))?
        .port();
    let registered = register(config.registry.as_deref());
    let shared = Arc::new(Shared {
        config: config.clone(),
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?,
        state: Mutex::new(Sandbox::default()),
        ready: tokio::sync::Notify::new(),
    });
    let app = axum::Router::new()
        .fallback(relay)
        .with_state(shared.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let result = supervise(&shared, port).await;
    if let Some(file) = registered {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// Writes this sandbox's pid into the watcher's registry.
fn register(registry: Option<&std::path::Path>) -> Option<PathBuf> {
    let file = registry?.join(std::process::id().to_string());
    std::fs::write(&file, b"").ok().map(|()| file)
}

#[derive(Debug)]
struct Shared {
    config: Config,
    client: reqwest::Client,
    state: Mutex<Sandbox>,
    /// Wakes the instance's `next` requests (an invocation fetched, or the
    /// instance replaced).
    ready: tokio::sync::Notify,
}

/// What the sandbox knows, under one lock.
#[derive(Debug, Default)]
struct Sandbox {
    /// The running instance's generation (one more per replacement).
    generation: u64,
    /// Invocations the instance received, by request id.
    in_flight: BTreeMap<String, InFlight>,
    /// Invocations fetched from the runtime API and not yet received by an
    /// instance (one fetched for an instance that died meanwhile waits for
    /// the next).
    fetched: VecDeque<Relayed>,
    /// A fetch is under way.
    fetching: bool,
}

#[derive(Debug)]
struct InFlight {
    generation: u64,
    deadline: Instant,
}

/// A response from the runtime API, as relayed.
#[derive(Debug)]
struct Relayed {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Relayed {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        r
    }
}

/// Relays one request of the instance to the runtime API. The relay runs
/// in a task of its own: an invocation taken from the runtime API is
/// accounted for even if the instance hangs up meanwhile.
async fn relay(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    match tokio::spawn(relay_one(shared, req)).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn relay_one(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if parts.method == Method::GET && path.ends_with("/runtime/invocation/next") {
        let generation = lock(&shared.state).generation;
        return next_invocation(shared, path, generation).await;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    if let Some(id) = answered_id(&path) {
        lock(&shared.state).in_flight.remove(id);
    }
    let mut headers = parts.headers;
    headers.remove(axum::http::header::HOST);
    let sent = shared
        .client
        .request(parts.method, shared.url(&path))
        .headers(headers)
        .body(body)
        .send()
        .await;
    match read(sent).await {
        Ok(r) => r.into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// The instance of `generation` asks for its next invocation. The sandbox
/// fetches one from the runtime API for it (one fetch at a time, and only
/// when an instance asks, so that a busy sandbox hoards nothing); what a
/// fetch brings after its instance died waits for the next instance.
async fn next_invocation(shared: Arc<Shared>, path: String, generation: u64) -> Response {
    loop {
        let ready = shared.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        {
            let mut state = lock(&shared.state);
            if state.generation != generation {
                return (StatusCode::GONE, "the instance was replaced").into_response();
            }
            if let Some(next) = state.fetched.pop_front() {
                return shared.deliver(&mut state, next, generation);
            }
            if !state.fetching {
                state.fetching = true;
                tokio::spawn(fetch(shared.clone(), path.clone()));
            }
        }
        ready.await;
    }
}

/// Takes one invocation from the runtime API (waiting as long as it
/// takes), and keeps it for the instance.
async fn fetch(shared: Arc<Shared>, path: String) {
    let url = shared.url(&path);
    let relayed = loop {
        match read(shared.client.get(&url).send().await).await {
            Ok(r) if r.status == StatusCode::OK => break r,
            // Nothing to run (cargo-lambda answers 204 when it stops), or
            // the API is unreachable: ask again (the supervisor ends the
            // sandbox when the API is gone).
            Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut state = lock(&shared.state);
    state.fetched.push_back(relayed);
    state.fetching = false;
    drop(state);
    shared.ready.notify_waiters();
}

async fn read(sent: reqwest::Result<reqwest::Response>) -> Result<Relayed, String> {
    let r = sent.map_err(|e| format!("the runtime API does not answer: {e}"))?;
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (k, v) in r.headers() {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_str().as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(k, v);
        }
    }
    headers.remove(axum::http::header::CONTENT_LENGTH);
    headers.remove(axum::http::header::TRANSFER_ENCODING);
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("the runtime API's answer broke off: {e}"))?;
    Ok(Relayed {
        status,
        headers,
        body,
    })
}

/// The request id of `/runtime/invocation/{id}/response` or `/error`.
fn answered_id(path: &str) -> Option<&str> {
    let rest = path.split_once("/runtime/invocation/")?.1;
    let (id, end) = rest.split_once('/')?;
    (end == "response" || end == "error").then_some(id)
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", host_and_prefix(&self.config.upstream))
    }

    /// Hands an invocation to the instance of `generation`: from now on its
    /// deadline runs.
    fn deliver(&self, state: &mut Sandbox, mut relayed: Relayed, generation: u64) -> Response {
        let deadline = Instant::now() + self.config.timeout;
        let epoch_ms = (SystemTime::now() + self.config.timeout)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if let Ok(v) = HeaderValue::from_str(&epoch_ms.to_string()) {
            relayed.headers.insert(DEADLINE, v);
        }
        if let Some(id) = relayed
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
        {
            state.in_flight.insert(
                id.to_owned(),
                InFlight {
                    generation,
                    deadline,
                },
            );
        }
        relayed.into_response()
    }

    /// Ends an invocation with an error, as Lambda answers it.
    async fn fail(&self, id: &str, kind: &str, message: &str) {
        let body = serde_json::json!({"errorType": kind, "errorMessage": message});
        let sent = self
            .client
            .post(self.url(&format!("/2018-06-01/runtime/invocation/{id}/error")))
            .header("lambda-runtime-function-error-type", kind)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        if let Err(e) = sent {
            eprintln!("lambda-sandbox: cannot report the failure of {id}: {e}");
        }
    }
}

fn lock(m: &Mutex<Sandbox>) -> std::sync::MutexGuard<'_, Sandbox> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why an instance was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
}

/// Keeps one instance running: replaces it when it dies or overruns, and
/// ends when the runtime API is gone.
async fn supervise(shared: &Arc<Shared>, port: u16) -> Result<(), String> {
    let parent = std::os::unix::process::parent_id();
    let mut instance = start(&shared.config, port)?;
    let mut started = Instant::now();
    let mut api_failures = 0u32;
    let mut next_api_check = Instant::now() + Duration::from_secs(1);
    loop {
        tokio::time::sleep(TICK).await;
        let overdue = overdue(shared);
        let exited = instance.try_wait().ok().flatten();
        let ending = match (exited, overdue.is_empty()) {
            (Some(status), _) => Some((Ending::Exited, status.to_string())),
            (None, false) => {
                let _ = instance.start_kill();
                let status = instance.wait().await.map(|s| s.to_string());
                Some((Ending::TimedOut, status.unwrap_or_default()))
            }
            (None, true) => None,
        };
        if let Some((ending, status)) = ending {
            replace(shared, ending, &status, &overdue).await;
            if started.elapsed() < RESTART_BACKOFF {
                tokio::time::sleep(RESTART_BACKOFF).await;
            }
            instance = start(&shared.config, port)?;
            started = Instant::now();
        }
        if Instant::now() >= next_api_check {
            next_api_check = Instant::now() + Duration::from_secs(1);
            api_failures = if api_alive(&shared.config.upstream).await {
                0
            } else {
                api_failures + 1
            };
            let orphaned = std::os::unix::process::parent_id() != parent;
            if api_failures >= API_GONE_AFTER || orphaned {
                let _ = instance.start_kill();
                let _ = instance.wait().await;
                return Err("the watcher is gone".to_owned());
            }
        }
    }
}

/// The invocations of the running instance whose deadline has passed.
fn overdue(shared: &Shared) -> Vec<String> {
    let state = lock(&shared.state);
    let now = Instant::now();
    state
        .in_flight
        .iter()
        .filter(|(_, f)| f.generation == state.generation && f.deadline <= now)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The instance is gone: a new generation begins, and every invocation the
/// old one had received ends with an error.
async fn replace(shared: &Shared, ending: Ending, status: &str, overdue: &[String]) {
    let failed: Vec<String> = {
        let mut state = lock(&shared.state);
        state.generation += 1;
        let current = state.generation;
        let ids: Vec<String> = state
            .in_flight
            .iter()
            .filter(|(_, f)| f.generation < current)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            state.in_flight.remove(id);
        }
        ids
    };
    shared.ready.notify_waiters();
    let secs = shared.config.timeout.as_secs_f64();
    for id in &failed {
        if overdue.contains(id) {
            let message = format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds");
            shared.fail(id, "Sandbox.Timedout", &message).await;
        } else {
            let message = format!("RequestId: {id} Error: Runtime exited ({status})");
            shared.fail(id, "Runtime.ExitError", &message).await;
        }
    }
    let why = match ending {
        Ending::Exited => format!("it exited ({status})"),
        Ending::TimedOut => format!("an invocation ran past the timeout of {secs:.2} s"),
    };
    eprintln!("{REPLACED}: {why}; {} invocation(s) failed", failed.len());
}

fn start(config: &Config, port: u16) -> Result<Child, String> {
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    Command::new(me)
        .arg(EXEC_FLAG)
        .arg(std::process::id().to_string())
        .arg(&config.program)
        .args(&config.args)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env_remove(TIMEOUT_VAR)
        .env_remove(REGISTRY_VAR)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", config.program.display()))
}

/// The runtime API's address as cargo-lambda gives it
/// (`http://127.0.0.1:9000/.rt/dispatch`), or as Lambda does (`host:port`),
/// without its scheme.
fn host_and_prefix(upstream: &str) -> &str {
    upstream.strip_prefix("http://").unwrap_or(upstream)
}

async fn api_alive(upstream: &str) -> bool {
    let upstream = host_and_prefix(upstream);
    let addr = upstream.split('/').next().unwrap_or(upstream);
    tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answered_invocation_is_read_from_its_path() {
        assert_eq!(
            answered_id("/dispatch/2018-06-01/runtime/invocation/abc-1/response"),
            Some("abc-1")
        );
        assert_eq!(
            answered_id("/2018-06-01/runtime/invocation/abc-1/error"),
            Some("abc-1")
        );
        assert_eq!(answered_id("/2018-06-01/runtime/invocation/next"), None);
        assert_eq!(answered_id("/2018-06-01/runtime/init/error"), None);
        assert_eq!(
            answered_id("/2018-06-01/runtime/invocation/abc-1/other"),
            None
        );
    }
}
