//! The whole system for an end-to-end test, run as deployed (see
//! `hooks_local::run`): the emulator, the tables, queues and secret (names of
//! its own), a synced config, each function under `cargo lambda watch` with
//! the template's environment and its policy enforced, and the poller that
//! feeds the queue to dispatch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hooks_core::config::{Config, ParseOptions};
use hooks_core::queue::Queue;
use hooks_core::settings::ResourceNames;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::sync::{Source, apply, plan_against};
use hooks_local::run::{Options, Running};
use serde_json::Value;

use crate::{Emulator, unique};

/// The bearer token the test stack's ingest accepts (it is in the secret).
pub const TOKEN: &str = "e2e-token";

/// The repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Stack {
    pub emu: Emulator,
    pub names: ResourceNames,
    pub sdk: aws_config::SdkConfig,
    pub queue: Queue,
    pub running: Running,
    http: reqwest::Client,
    log: PathBuf,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("names", &self.names).finish()
    }
}

impl Stack {
    /// Starts everything with `handlers` (a handlers.toml) live.
    pub async fn start(handlers: &str) -> Stack {
        Self::start_with_secrets(handlers, &[]).await
    }

    /// Starts everything; `secrets` are added to the Secrets Manager secret
    /// (which holds the ingest token already).
    pub async fn start_with_secrets(handlers: &str, secrets: &[(&str, &str)]) -> Stack {
        Self::start_opts(handlers, secrets, false).await
    }

    /// As deployed for a benchmark: release builds, every AWS call metered
    /// (`stack.running.gateway.units()`).
    pub async fn start_release_metered(handlers: &str) -> Stack {
        Self::start_opts(handlers, &[], true).await
    }

    async fn start_opts(handlers: &str, secrets: &[(&str, &str)], bench: bool) -> Stack {
        let emu = Emulator::start();
        let names = ResourceNames::prefixed(&unique("e2e"));
        let sdk = emu.sdk_config().await;
        let log = std::env::temp_dir().join(format!("{}.log", unique("cargo-lambda-watch")));
        let venv = root().join(".venv/bin");
        let cargo_lambda = venv.join("cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "cargo-lambda is not installed in .venv: run `make test`"
        );
        let mut values = BTreeMap::from([("HOOKS_INGEST_TOKENS".to_owned(), TOKEN.to_owned())]);
        values.extend(
            secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let opts = Options {
            root: root(),
            emulator: emu.endpoint().to_owned(),
            names: names.clone(),
            secrets: values,
            allow_networks: "127.0.0.0/8".to_owned(),
            opt_dir: root().join("tests/fixtures/scripts"),
            ingest_port: 0,
            aws_port: 0,
            reload: false,
            release: bench,
            meter: bench,
            log: Some(log.clone()),
            cargo_lambda,
            path_prefix: Some(venv),
        };
        let running = match hooks_local::run::start(&sdk, opts).await {
            Ok(r) => r,
            Err(e) => panic!(
                "the stack did not start: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        // The tests reach AWS as an operator does: through the local
        // endpoint (the gateway), never the emulator alone.
        let sdk = sdk
            .to_builder()
            .endpoint_url(running.gateway.endpoint())
            .build();
        let stack = Stack {
            emu,
            queue: running.queue.clone(),
            names,
            sdk,
            running,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(180))
                .build()
                .expect("client"),
            log,
        };
        stack.sync(handlers).await;
        stack
    }

    /// Where the functions' output goes.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// What `cargo lambda watch` and the functions printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Syncs a new handlers.toml, as `hooks sync` does.
    /// The config table, as an operator's `hooks` reaches it.
    pub fn config_store(&self) -> DynamoConfigStore {
        DynamoConfigStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            &self.names.config_table,
            self.emu.endpoint(),
        )
    }

    pub async fn sync(&self, handlers: &str) {
        let config = Config::parse("handlers.toml", handlers, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = self.config_store();
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
        format!("{}{path}", self.running.ingest_url())
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
        self.send(req).await
    }

    /// Sends a request to ingest; its status and JSON body (or text).
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
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

    /// A POST with extra headers (as billing may send, `traceparent` say).
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
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
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
