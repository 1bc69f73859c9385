//! Runs the deployment on this machine: the tables, queues and secret in
//! the emulator, the IAM gateway in front of it, each function under its own
//! `cargo lambda watch` with exactly the environment the template gives it
//! (and the credentials of its own role), and the poller that feeds the queue
//! to dispatch as the SQS trigger does. `hooks dev` and the end-to-end tests
//! both start it this way.
//!
//! What Lambda does and `cargo lambda watch` does not, done here:
//! - each instance runs in a sandbox ([`crate::sandbox`], cargo's runner for
//!   `cargo run`): an instance that dies is replaced alone and the
//!   invocation it was answering ends with an error; an invocation past the
//!   function's timeout is killed; the function sees the template's
//!   deadline; and every instance stops with its watcher;
//! - should a sandbox itself die, its whole watcher is restarted (cargo-lambda
//!   1.9.2 would route invocations to the dead instance);
//! - the poller waits for an invocation no longer than the function's
//!   timeout in the template.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hooks_core::queue::Queue;
use hooks_core::settings::ResourceNames;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::iam::{Gateway, access_key_of};
use crate::template::{Deployment, Function, Local};

/// How to run it. (Its `Debug` shows the secret's names, not its values.)
#[derive(Clone)]
pub struct Options {
    /// The repository (cargo-lambda runs there).
    pub root: PathBuf,
    /// The AWS API emulator.
    pub emulator: String,
    pub names: ResourceNames,
    /// The secret's values (ingest tokens, handler secrets).
    pub secrets: BTreeMap<String, String>,
    /// The template's `AllowNetworks` parameter.
    pub allow_networks: String,
    /// What Lambda mounts at `/opt`: the template's scripts layer, a folder
    /// holding the scripts handlers.toml runs. Template values under `/opt`
    /// point here.
    pub opt_dir: PathBuf,
    /// Port of ingest's watcher (0: any free port). Dispatch gets another.
    pub ingest_port: u16,
    /// Port of the local AWS endpoint, the IAM gateway in front of the
    /// emulator (0: any free port). Everything reaches AWS through it: the
    /// functions, the queue trigger, and the operator's `hooks` commands.
    pub aws_port: u16,
    /// Rebuild and restart a function when its code changes.
    pub reload: bool,
    /// Run release builds (as deployed) rather than debug ones.
    pub release: bool,
    /// Count what every AWS call would be billed ([`Running::units`]).
    pub meter: bool,
    /// Where the watchers' output goes: the terminal, or this file.
    pub log: Option<PathBuf>,
    /// `cargo-lambda`.
    pub cargo_lambda: PathBuf,
    /// Added in front of `PATH` (where cargo-lambda finds its tools).
    pub path_prefix: Option<PathBuf>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("root", &self.root)
            .field("emulator", &self.emulator)
            .field("names", &self.names)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("allow_networks", &self.allow_networks)
            .field("opt_dir", &self.opt_dir)
            .field("ingest_port", &self.ingest_port)
            .field("aws_port", &self.aws_port)
            .field("reload", &self.reload)
            .field("release", &self.release)
            .field("meter", &self.meter)
            .finish_non_exhaustive()
    }
}

/// The running deployment; everything stops when it is dropped.
#[derive(Debug)]
pub struct Running {
    pub deployment: Deployment,
    pub gateway: Gateway,
    /// The Secrets Manager secret (a name works wherever its ARN does).
    pub secret_name: String,
    pub secret_arn: String,
    pub queue: Queue,
    /// What the queue trigger invoked.
    pub invocations: crate::poller::InvocationLog,
    watchers: Vec<Arc<Watcher>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for w in &self.watchers {
            w.stop();
        }
    }
}

impl Running {
    /// The port of a function's watcher.
    pub fn port(&self, binary: &str) -> Option<u16> {
        self.watchers
            .iter()
            .find(|w| w.function.binary == binary)
            .map(|w| w.port)
    }

    /// Ingest's function URL.
    pub fn ingest_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/lambda-url/ingest",
            self.port("ingest").unwrap_or(0)
        )
    }

    /// The process of a function's `cargo lambda watch` (it changes only
    /// when a sandbox itself dies, and its watcher is restarted).
    pub fn watcher_pid(&self, binary: &str) -> Option<u32> {
        let w = self.watchers.iter().find(|w| w.function.binary == binary)?;
        w.child.lock().ok()?.as_ref()?.id()
    }

    /// Replaced instances so far, by function.
    pub fn restarts(&self, binary: &str) -> usize {
        self.watchers
            .iter()
            .find(|w| w.function.binary == binary)
            .map_or(0, |w| w.restarts.lock().map_or(0, |r| *r))
    }
}

/// Starts everything on an emulator where nothing of `names` exists yet.
pub async fn start(sdk: &aws_config::SdkConfig, opts: Options) -> Result<Running, String> {
    crate::bootstrap(sdk, &opts.names)
        .await
        .map_err(|e| e.to_string())?;
    let secret_name = format!(
        "{}-secrets",
        opts.names.config_table.trim_end_matches("-config")
    );
    let secret_arn = crate::put_secret(sdk, &secret_name, &opts.secrets)
        .await
        .map_err(|e| e.to_string())?;
    let deployment = Deployment::from_repository(&local_values(&opts, &secret_arn))?;
    let sandbox = Sandbox::build(&opts).await?;
    let gateway = Gateway::start_with(
        SocketAddr::from(([127, 0, 0, 1], opts.aws_port)),
        &opts.emulator,
        &deployment.functions,
        opts.meter,
    )
    .await
    .map_err(|e| format!("cannot start the local AWS endpoint (the IAM gateway): {e}"))?;
    let admin = sdk.to_builder().endpoint_url(gateway.endpoint()).build();
    let queue = Queue::resolve(
        aws_sdk_sqs::Client::new(&admin),
        &gateway.endpoint(),
        &opts.names.queue,
        &opts.names.dead_letter_queue,
    )
    .await
    .map_err(|e| e.to_string())?;
    // From here on, a failure drops `running`, which stops what was started.
    let mut running = Running {
        deployment,
        gateway,
        secret_name,
        secret_arn,
        queue,
        invocations: crate::poller::InvocationLog::default(),
        watchers: Vec::new(),
        tasks: Vec::new(),
    };
    running.start_watchers(&opts, &sandbox).await?;
    running.start_pollers(sdk);
    Ok(running)
}

/// What the template's references resolve to here: the local names, the
/// secret just stored (`SecretsArn`) and the internal networks handlers may
/// reach (`AllowNetworks`).
fn local_values(opts: &Options, secret_arn: &str) -> Local {
    Local {
        names: opts.names.clone(),
        parameters: BTreeMap::from([
            ("SecretsArn".to_owned(), secret_arn.to_owned()),
            ("AllowNetworks".to_owned(), opts.allow_networks.clone()),
        ]),
    }
}

impl Running {
    /// Starts each function's `cargo lambda watch` (ingest's on the port
    /// asked for, if any; the others on free ports), each with the
    /// supervisor that replaces it when a sandbox dies, and waits until
    /// every one listens.
    async fn start_watchers(&mut self, opts: &Options, sandbox: &Sandbox) -> Result<(), String> {
        let functions = self.deployment.functions.clone();
        let aws = self.gateway.endpoint();
        for f in &functions {
            let port = if f.binary == "ingest" && opts.ingest_port != 0 {
                opts.ingest_port
            } else {
                free_port()?
            };
            let w = Arc::new(Watcher::new(f.clone(), port, opts, &aws, sandbox)?);
            self.watchers.push(w.clone());
            w.spawn().await?;
            self.tasks.push(tokio::spawn(supervise(w)));
        }
        for w in &self.watchers {
            wait_for_port(w.port, Duration::from_secs(120))
                .await
                .then_some(())
                .ok_or_else(|| {
                    format!("cargo lambda watch for {} did not start", w.function.binary)
                })?;
        }
        Ok(())
    }

    /// Starts the queue trigger of every function that has one, as the SQS
    /// event source mapping: polling with the function's role, and invoking
    /// the function through its watcher.
    fn start_pollers(&mut self, sdk: &aws_config::SdkConfig) {
        let aws = self.gateway.endpoint();
        for w in &self.watchers {
            let Some(trigger) = w.function.trigger else {
                continue;
            };
            // It knows the queue by its ARN, as AWS's does: no lookup.
            let queue = Queue::at(
                aws_sdk_sqs::Client::new(&role(sdk, &aws, &w.function.binary)),
                self.queue.url(),
                self.queue.dlq_url(),
                &aws,
            );
            let invoke = format!(
                "http://127.0.0.1:{}/2015-03-31/functions/{}/invocations",
                w.port, w.function.binary
            );
            self.tasks.push(tokio::spawn(crate::run_poller(
                queue,
                invoke,
                trigger,
                w.function.timeout,
                self.invocations.clone(),
                std::future::pending(),
            )));
        }
    }
}

/// The AWS configuration of a function's role (the event source mapping
/// works with it): its access key, through the local endpoint `aws`.
fn role(sdk: &aws_config::SdkConfig, aws: &str, binary: &str) -> aws_config::SdkConfig {
    sdk.to_builder()
        .endpoint_url(aws)
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new(
                access_key_of(binary),
                "local",
                None,
                None,
                "event-source-mapping",
            ),
        ))
        .build()
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until something listens on `port`.
pub async fn wait_for_port(port: u16, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The sandbox program, and how cargo is told to run instances in it.
#[derive(Debug)]
struct Sandbox {
    program: PathBuf,
    /// `CARGO_TARGET_<host triple>_RUNNER`.
    runner_var: String,
}

impl Sandbox {
    /// Builds the sandbox (a debug build whatever `release` says: it only
    /// relays) and finds the host's target triple, whose runner it becomes.
    async fn build(opts: &Options) -> Result<Sandbox, String> {
        let cargo = |args: &[&str]| {
            let mut c = Command::new("cargo");
            c.args(args).current_dir(&opts.root).stdin(Stdio::null());
            if let Some(prefix) = &opts.path_prefix {
                let path = std::env::var("PATH").unwrap_or_default();
                c.env("PATH", format!("{}:{path}", prefix.display()));
            }
            c
        };
        let built = cargo(&["build", "--locked", "--quiet", "--bin", "lambda-sandbox"])
            .output()
            .await
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !built.status.success() {
            return Err(format!(
                "cannot build the instances' sandbox (lambda-sandbox): {}",
                String::from_utf8_lossy(&built.stderr)
            ));
        }
        let version = Command::new("rustc")
            .arg("-vV")
            .current_dir(&opts.root)
            .output()
            .await
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        let text = String::from_utf8_lossy(&version.stdout);
        let host = text
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .ok_or("rustc -vV names no host triple")?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| opts.root.join("target"), PathBuf::from);
        Ok(Sandbox {
            program: target.join("debug/lambda-sandbox"),
            runner_var: format!(
                "CARGO_TARGET_{}_RUNNER",
                host.to_uppercase().replace(['-', '.'], "_")
            ),
        })
    }
}

/// One function's `cargo lambda watch`.
#[derive(Debug)]
struct Watcher {
    function: Function,
    port: u16,
    command: Vec<String>,
    /// The sandbox program, which runs the command as its guard.
    guard: PathBuf,
    /// cargo-lambda's own environment.
    env: Vec<(String, String)>,
    root: PathBuf,
    log: Option<PathBuf>,
    child: Mutex<Option<Child>>,
    restarts: Mutex<usize>,
    /// The generation of the running watcher (one more per restart), and
    /// where its output reports a dead instance (with its generation, so
    /// that a report from a replaced watcher is ignored).
    generation: std::sync::atomic::AtomicU64,
    died: tokio::sync::mpsc::UnboundedSender<u64>,
    deaths: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<u64>>>,
    /// Set once the deployment stops: output is no longer shown (instances
    /// cut off from their runtime complain about it).
    stopping: std::sync::atomic::AtomicBool,
    env_file: PathBuf,
    /// Where its sandboxes write their pids.
    registry: PathBuf,
}

/// How many instances of ingest may run at once locally (Lambda scales it
/// without a set limit; each local instance is a process).
const INGEST_INSTANCES: usize = 4;

impl Watcher {
    /// A function's watcher, not started yet: its environment written to a
    /// file of its own, and the folder its sandboxes write their pids in.
    fn new(
        f: Function,
        port: u16,
        opts: &Options,
        aws: &str,
        sandbox: &Sandbox,
    ) -> Result<Watcher, String> {
        let env_file = std::env::temp_dir().join(format!(
            "hooks-{}-{}-{port}.env",
            f.binary,
            std::process::id()
        ));
        let text: String = function_env(&f, opts, aws)
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&env_file, text).map_err(|e| format!("{}: {e}", env_file.display()))?;
        let registry = env_file.with_extension("sandboxes");
        std::fs::create_dir_all(&registry).map_err(|e| format!("{}: {e}", registry.display()))?;
        let command = watch_command(&f, port, opts, &env_file);
        let env = cargo_lambda_env(&f, opts, sandbox, &registry);
        let (died, deaths) = tokio::sync::mpsc::unbounded_channel();
        Ok(Watcher {
            function: f,
            port,
            command,
            guard: sandbox.program.clone(),
            env,
            root: opts.root.clone(),
            log: opts.log.clone(),
            child: Mutex::new(None),
            restarts: Mutex::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
            died,
            deaths: Mutex::new(Some(deaths)),
            stopping: std::sync::atomic::AtomicBool::new(false),
            env_file,
            registry,
        })
    }

    /// Starts cargo-lambda under its guard, which ends it if this process
    /// is killed before it can stop it.
    async fn spawn(self: &Arc<Self>) -> Result<(), String> {
        let mut cmd = Command::new(&self.guard);
        cmd.arg(crate::sandbox::GUARD_FLAG)
            .arg(std::process::id().to_string())
            .args(&self.command)
            .current_dir(&self.root)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.guard.display()))?;
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, self.clone(), generation));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, self.clone(), generation));
        }
        if let Ok(mut c) = self.child.lock() {
            *c = Some(child);
        }
        Ok(())
    }

    /// Ends the watcher's whole process group (cargo-lambda) and every
    /// sandbox it started (watchexec runs cargo in a group of its own; each
    /// instance dies with its sandbox, and cargo with its child).
    fn kill(&self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(child) = c.take()
            && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        crate::sandbox::kill_registered(&self.registry);
    }

    fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.kill();
        let _ = std::fs::remove_file(&self.env_file);
        let _ = std::fs::remove_dir(&self.registry);
    }
}

/// The function's environment: the template's (with `/opt`, where Lambda
/// mounts the scripts layer, standing for `opt_dir`), plus what Lambda
/// itself sets (region, the role's credentials). The secret's values are
/// not in it.
fn function_env(f: &Function, opts: &Options, aws: &str) -> BTreeMap<String, String> {
    let mut fenv: BTreeMap<String, String> = f.env.clone();
    for v in fenv.values_mut() {
        if let Some(rest) = v.strip_prefix("/opt")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            *v = format!("{}{rest}", opts.opt_dir.display());
        }
    }
    fenv.extend([
        ("AWS_REGION".into(), crate::template::REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), access_key_of(&f.binary)),
        ("AWS_SECRET_ACCESS_KEY".into(), "local".into()),
        ("AWS_ENDPOINT_URL".into(), aws.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]);
    fenv
}

/// The `cargo lambda watch` command of a function: on `port`, as many
/// instances at once as its trigger's concurrency (without a trigger, as
/// ingest: [`INGEST_INSTANCES`]), with its environment from `env_file`.
fn watch_command(f: &Function, port: u16, opts: &Options, env_file: &Path) -> Vec<String> {
    let concurrency = f
        .trigger
        .map_or(INGEST_INSTANCES, |t| t.max_concurrency)
        .to_string();
    let mut command = vec![
        opts.cargo_lambda.display().to_string(),
        "lambda".into(),
        "watch".into(),
        "-A".into(),
        "127.0.0.1".into(),
        "-P".into(),
        port.to_string(),
        // `cargo run --quiet`: the functions are built before.
        "--quiet".into(),
        "--concurrency".into(),
        concurrency,
        "--env-file".into(),
        env_file.display().to_string(),
    ];
    if !opts.reload {
        command.push("--ignore-changes".into());
    }
    if opts.release {
        command.push("--release".into());
    }
    command
}

/// cargo-lambda's own environment: its own messages only, and the
/// variables it needs; the function inherits these, so nothing else is
/// passed on.
fn cargo_lambda_env(
    f: &Function,
    opts: &Options,
    sandbox: &Sandbox,
    registry: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        // (Warnings and errors: "command exited" is how a dead instance shows.)
        ("RUST_LOG".to_owned(), "cargo_lambda=warn,cargo_lambda_watch=warn,watchexec=off,command_group=off,tokio_graceful_shutdown=off".to_owned()),
        ("CARGO_LAMBDA_IGNORE_FILE".to_owned(), opts.root.join(".cargolambdaignore").display().to_string()),
        // `cargo run` starts each instance in its sandbox, which takes
        // these two (the instance does not see them).
        (sandbox.runner_var.clone(), sandbox.program.display().to_string()),
        (crate::sandbox::TIMEOUT_VAR.to_owned(), f.timeout.as_millis().to_string()),
        (crate::sandbox::REGISTRY_VAR.to_owned(), registry.display().to_string()),
    ];
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(prefix) = &opts.path_prefix {
        path = format!("{}:{path}", prefix.display());
    }
    env.push(("PATH".to_owned(), path));
    for keep in [
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "TMPDIR",
        "USER",
        "LANG",
        "TERM",
    ] {
        if let Ok(v) = std::env::var(keep) {
            env.push((keep.to_owned(), v));
        }
    }
    env
}

/// Whether `pid` is (still) a sandbox, not a process that reused its pid.
/// Copies a watcher's output to the terminal or the log, and notices when
/// its function instance dies.
async fn pump(stream: impl AsyncRead + Unpin, w: Arc<Watcher>, generation: u64) {
    let name = w.function.binary.clone();
    let mut lines = BufReader::new(stream).lines();
    let mut file = w.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    while let Ok(Some(line)) = lines.next_line().await {
        if w.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match &mut file {
            Some(f) => {
                use std::io::Write;
                let _ = writeln!(f, "[{name}] {line}");
            }
            None => eprintln!("[{name}] {line}"),
        }
        if instance_died(&line) {
            let _ = w.died.send(generation);
        }
        if line.trim_start().starts_with(crate::sandbox::REPLACED)
            && let Ok(mut r) = w.restarts.lock()
        {
            *r += 1;
        }
    }
}

/// cargo-lambda's own log line for an instance that ended: with the
/// sandbox, only a dead sandbox (the functions' own lines are JSON, and
/// never match).
fn instance_died(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("ERROR command exited") || line.starts_with("ERROR command killed")
}

/// Replaces a dead sandbox (the sandbox replaces a dead instance itself):
/// restarts its watcher (cargo-lambda 1.9.2 keeps routing invocations to a
/// dead instance, and they hang). The invocations of the function's other
/// instances end with an error too; their messages come back after the
/// queue's visibility timeout.
async fn supervise(w: Arc<Watcher>) {
    let Some(mut deaths) = w.deaths.lock().ok().and_then(|mut d| d.take()) else {
        return;
    };
    while let Some(generation) = deaths.recv().await {
        if generation != w.generation.load(std::sync::atomic::Ordering::SeqCst) {
            continue; // a report from a watcher already replaced
        }
        tracing::warn!(function = %w.function.binary, "the function instance died; starting a new one");
        w.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        w.kill();
        wait_port_free(w.port, Duration::from_secs(10)).await;
        if let Err(e) = w.spawn().await {
            tracing::error!(error = %e, "cannot restart the function");
            return;
        }
        if wait_for_port(w.port, Duration::from_secs(30)).await
            && let Ok(mut r) = w.restarts.lock()
        {
            *r += 1;
        }
    }
}

async fn wait_port_free(port: u16, limit: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit
        && tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
