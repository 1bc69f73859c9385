//! Integration tests: the chain against real HTTP endpoints and real scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_http;
mod config_store;
mod deployed;
mod emulator_dynamodb;
mod emulator_fifo;
mod fuzz;
mod gateway;
mod http_target;
mod infra;
mod layers;
mod log_queries;
mod mtls;
mod pipeline;
mod replay;
mod script_target;
mod soak;

use std::path::{Path, PathBuf};

use chrono::Utc;
use hooks_core::chain::{AfterRun, Progress, Unguarded, run_after};
use hooks_core::config::{Config, ParseOptions, Phase};
use hooks_core::events::Event;
use hooks_core::protocol::EventEnvelope;
use hooks_core::targets::{
    HttpCaller, HttpOptions, NetworkPolicy, ScriptOptions, ScriptRunner, Secrets, Targets,
};

/// The secret the tests sign with: the Standard Webhooks test-vector key.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn config(handlers: &str) -> Config {
    let src = format!("version = 1\n{handlers}");
    match Config::parse("test.toml", &src, &ParseOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scripts")
}

/// Real targets that may reach loopback (the receiver), and nothing else internal.
pub fn targets() -> Targets {
    targets_with(NetworkPolicy::parse("127.0.0.0/8").unwrap())
}

pub fn targets_with(policy: NetworkPolicy) -> Targets {
    let secrets = Secrets::new([("HOOK_SECRET".to_owned(), SECRET.to_owned())], "test");
    let http = HttpCaller::new(HttpOptions {
        policy,
        max_response_bytes: 64 * 1024,
        secrets: secrets.clone(),
        ..HttpOptions::default()
    })
    .unwrap();
    let mut opts = ScriptOptions::new(scripts_dir());
    opts.secrets = secrets;
    opts.max_output_bytes = 64 * 1024;
    Targets::new(http, ScriptRunner::new(opts))
}

pub fn event(data: serde_json::Value) -> EventEnvelope {
    EventEnvelope {
        id: format!("evt-{}", uuid_like()),
        event: Event::ClientsCreate,
        occurred_at: Utc::now(),
        data: data.as_object().cloned().unwrap_or_default(),
        trace: None,
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One http handler table for clients.create.
pub fn http_handler(id: u32, priority: u32, url: &str, extra: &str) -> String {
    format!(
        "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"clients.create\"\npriority = {priority}\n{extra}\nhttp = {{ url = \"{url}\", timeout = \"2s\" }}\n"
    )
}

/// Runs the after chain of `ev` from the start.
pub async fn after(t: &Targets, c: &Config, ev: &EventEnvelope) -> AfterRun {
    resume(t, c, ev, Progress::new(ev.data.clone())).await
}

/// Runs the after chain of `ev` from `progress`.
pub async fn resume(t: &Targets, c: &Config, ev: &EventEnvelope, progress: Progress) -> AfterRun {
    let chain = c.chain_for(ev.event, Phase::After);
    run_after(t, &chain, &c.defaults, ev, progress, None, &mut Unguarded).await
}
