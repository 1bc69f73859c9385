//! The whole system for an end-to-end test: the emulator, the tables and
//! queues (names of its own), a synced config, both functions under
//! `cargo lambda watch`, and the poller that feeds the queue to dispatch.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hooks_core::config::{Config, ParseOptions};
use hooks_core::local::{bootstrap, run_poller};
use hooks_core::queue::Queue;
use hooks_core::settings::ResourceNames;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::sync::{Source, apply, plan_against};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{Emulator, unique};

/// The bearer token the test stack's ingest accepts.
pub const TOKEN: &str = "e2e-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Stack {
    pub emu: Emulator,
    pub names: ResourceNames,
    pub sdk: aws_config::SdkConfig,
    pub queue: Queue,
    watch: Child,
    port: u16,
    poller: JoinHandle<()>,
    http: reqwest::Client,
    log: PathBuf,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("port", &self.port).finish()
    }
}

impl Stack {
    /// Starts everything with `handlers` (a handlers.toml) live.
    pub async fn start(handlers: &str) -> Stack {
        let emu = Emulator::start();
        let names = ResourceNames::prefixed(&unique("e2e"));
        let sdk = emu.sdk_config().await;
        bootstrap(&sdk, &names).await.expect("bootstrap");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let log = std::env::temp_dir().join(format!("{}.log", unique("cargo-lambda-watch")));
        let log_file = std::fs::File::create(&log).expect("log file");
        let venv = root().join(".venv/bin");
        let cargo_lambda = venv.join("cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "cargo-lambda is not installed in .venv: run `make test`"
        );
        let mut env = emu.env();
        env.extend(names.env());
        env.extend([
            ("HOOKS_INGEST_TOKENS", TOKEN.to_owned()),
            ("HOOKS_ALLOW_NETWORKS", "127.0.0.0/8".to_owned()),
            (
                "HOOKS_SCRIPTS_DIR",
                root().join("tests/fixtures/scripts").display().to_string(),
            ),
            ("RUST_LOG", "info".to_owned()),
            (
                "PATH",
                format!(
                    "{}:{}",
                    venv.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
        ]);
        let watch = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(root())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch");
        let queue = Queue::resolve(
            aws_sdk_sqs::Client::new(&sdk),
            emu.endpoint(),
            &names.queue,
            &names.dead_letter_queue,
        )
        .await
        .expect("queue");
        let invoke = format!("http://127.0.0.1:{port}/2015-03-31/functions/dispatch/invocations");
        let poller = tokio::spawn(run_poller(queue.clone(), invoke, std::future::pending()));
        let stack = Stack {
            emu,
            names,
            sdk,
            queue,
            watch,
            port,
            poller,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(180))
                .build()
                .expect("client"),
            log,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cargo lambda watch did not start: {}",
                stack.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stack.sync(handlers).await;
        stack
    }

    /// What `cargo lambda watch` and the functions printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Syncs a new handlers.toml, as `hooks sync` does.
    pub async fn sync(&self, handlers: &str) {
        let config = Config::parse("handlers.toml", handlers, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = DynamoConfigStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            &self.names.config_table,
            self.emu.endpoint(),
        );
        let source = Source {
            file: "handlers.toml".into(),
            text: handlers.into(),
            git_commit: None,
            synced_by: "e2e".into(),
        };
        let prepared = plan_against(&store, config, source).await.expect("plan");
        apply(&store, &prepared).await.expect("sync");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/ingest{path}", self.port)
    }

    /// Sends a request to ingest with the test token; returns status and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        auth: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("ingest unreachable: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(
            reqwest::Method::POST,
            path,
            Some(&body.to_string()),
            Some(&format!("Bearer {TOKEN}")),
        )
        .await
    }

    pub async fn event(&self, id: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::GET,
            &format!("/events/{id}"),
            None,
            Some(&format!("Bearer {TOKEN}")),
        )
        .await
    }

    /// Waits until the event reaches `status` (or panics with the function logs).
    pub async fn wait_for(&self, id: &str, status: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let (code, body) = self.event(id).await;
            if code == 200 && body["status"] == status {
                return body;
            }
            if started.elapsed() > limit {
                panic!(
                    "event {id} did not reach `{status}` in {limit:?}; last: {code} {body:#}\n--- functions ---\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.poller.abort();
        if let Ok(pid) = i32::try_from(self.watch.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.watch.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
