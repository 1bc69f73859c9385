//! How long each page of the operator console takes to render against the
//! emulator holding 100,000 execution log entries (33,334 events of 3 calls,
//! over the last 24 hours), `hooks console` (release) reading it as an
//! operator's would. Figures, never assertions: the machines are shared.
//!
//! The emulator answers a query by scanning every item of the table (moto's
//! `Table.query`), so the same run also times one index query and one read
//! by id on the same table: the baseline each page is a multiple of.
//!
//!     cargo build --release --bin hooks && cargo bench -p hooks-tests --bench console

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{TimeDelta, Utc};
use hooks_core::chain::{CallRecord, Outcome};
use hooks_core::config::{Config, ParseOptions, Phase};
use hooks_core::events::Event;
use hooks_core::protocol::EventEnvelope;
use hooks_core::records::{EventRecord, EventStatus, LogEntry, QueuedEvent};
use hooks_core::settings::ResourceNames;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::record_item;
use hooks_core::sync::{Source, apply, plan_against};
use hooks_tests::{Emulator, closed_port, root, unique};

const CALLS: usize = 100_000;
const PER_EVENT: usize = 3;

fn call(id: &str, event: Event, h: u32, outcome: Outcome, at: chrono::DateTime<Utc>) -> LogEntry {
    LogEntry {
        record: CallRecord {
            event_id: id.into(),
            event,
            phase: Phase::After,
            handler_id: h,
            handler_name: format!("handler {h}"),
            attempt: 1,
            started_at: at,
            duration_ms: 20 + u64::from(h) * 15,
            status_code: Some(if outcome == Outcome::Failed { 503 } else { 200 }),
            outcome,
            error: (outcome == Outcome::Failed).then(|| "HTTP 503 Service Unavailable".into()),
            retryable: None,
            retry_after_secs: None,
            resolution: None,
            reason: None,
            response: Some(r#"{"status":"ok","account":"acc-123456"}"#.into()),
            changes: Vec::new(),
            shadow: false,
            span_id: None,
            probe: false,
            not_called: false,
        },
        revision: 1,
    }
}

fn record(i: usize) -> EventRecord {
    let now = Utc::now();
    let at = now - TimeDelta::milliseconds((i as i64) * 86_400_000 / (CALLS / PER_EVENT) as i64);
    let event = [
        Event::ClientsCreate,
        Event::ClientsUpdate,
        Event::AccountsUpdate,
    ][i % 3];
    let id = format!("bench-{i:06}");
    let q = QueuedEvent {
        event: EventEnvelope {
            id: id.clone(),
            event,
            occurred_at: at,
            data: serde_json::json!({"client_id": i % 1000, "plan": "pro", "balance": 12.5})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            trace: None,
        },
        key: format!("client:{}", i % 1000),
        received_at: at - TimeDelta::seconds(1),
    };
    let mut r = EventRecord::accepted(&q, at);
    let failed = i.is_multiple_of(20);
    r.calls = (1..=PER_EVENT as u32)
        .map(|h| {
            let outcome = if failed && h == 3 {
                Outcome::Failed
            } else {
                Outcome::Processed
            };
            call(
                &id,
                event,
                h,
                outcome,
                at - TimeDelta::milliseconds(300 - 100 * i64::from(h)),
            )
        })
        .collect();
    if failed {
        r.status = EventStatus::Dead;
        r.last_error = Some("out of attempts".into());
        r.updated_at = at;
    } else {
        r.succeed(at);
    }
    r
}

/// Writes the events `from..to` (0 the newest).
async fn fill(emu: &Emulator, table: &str, from: usize, to: usize) {
    let client = emu.dynamodb();
    let events = to;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let client = client.clone();
        let table = table.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut batch: Vec<WriteRequest> = Vec::new();
            for i in (from + worker..events).step_by(8) {
                let item: HashMap<String, AttributeValue> =
                    record_item(&record(i), Duration::from_secs(86_400 * 30)).expect("item");
                batch.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .expect("put"),
                        )
                        .build(),
                );
                if batch.len() == 25 || i + 8 >= events {
                    let mut pending = std::mem::take(&mut batch);
                    while !pending.is_empty() {
                        let out = client
                            .batch_write_item()
                            .request_items(&table, pending)
                            .send()
                            .await
                            .expect("batch write");
                        pending = out
                            .unprocessed_items
                            .and_then(|mut m| m.remove(&table))
                            .unwrap_or_default();
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    println!(
        "  wrote events {from}..{to} in {:.0} s: the table holds {} calls",
        started.elapsed().as_secs_f64(),
        to * PER_EVENT
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hooks = root().join("target/release/hooks");
    assert!(
        hooks.exists(),
        "build it first: cargo build --release --bin hooks"
    );
    let emu = Emulator::start();
    let sdk = emu.sdk_config().await;
    let names = ResourceNames::prefixed(&unique("bench-console"));
    hooks_local::bootstrap(&sdk, &names)
        .await
        .expect("tables and queues");
    println!(
        "operator console pages, the emulator holding 1,000 then {CALLS} execution log entries"
    );
    let handlers: String = (1..=3)
        .map(|h| format!("[[handler]]\nid = {h}\nname = \"handler {h}\"\nevent = \"clients.*\"\npriority = {h}\nhttp = {{ url = \"https://h{h}.example.com/hooks\" }}\n"))
        .collect();
    let config = Config::parse(
        "handlers.toml",
        &format!("version = 1\n{handlers}"),
        &ParseOptions::default(),
    )
    .expect("config");
    let store = DynamoConfigStore::new(emu.dynamodb(), &names.config_table, emu.endpoint());
    let source = Source {
        file: "handlers.toml".into(),
        text: handlers.clone(),
        git_commit: None,
        synced_by: "bench".into(),
    };
    apply(
        &store,
        &plan_against(&store, config, source).await.expect("plan"),
    )
    .await
    .expect("sync");

    let port = closed_port().await;
    let mut cmd = tokio::process::Command::new(&hooks);
    cmd.args(["console", "--port", &port.to_string()])
        .env_clear()
        .envs(emu.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in names.env() {
        cmd.env(k, v);
    }
    let _console = cmd.spawn().expect("hooks console");
    assert!(hooks_local::run::wait_for_port(port, Duration::from_secs(30)).await);

    let events = CALLS.div_ceil(PER_EVENT);
    for (from, to) in [(0, 1_000 / PER_EVENT), (1_000 / PER_EVENT, events)] {
        fill(&emu, &names.events_table, from, to).await;
        measure(&emu, &names, port).await;
    }
}

/// Times each page, beside the emulator's own time for one index query.
async fn measure(emu: &Emulator, names: &ResourceNames, port: u16) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // The baseline: what the emulator takes for one index query and one
    // read by id on this table.
    let ddb = emu.dynamodb();
    let bucket = format!("{}#3", Utc::now().format("%Y-%m-%d"));
    let mut query_ms = Vec::new();
    let mut get_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        ddb.query()
            .table_name(&names.events_table)
            .index_name("by_time")
            .key_condition_expression("#b = :b")
            .expression_attribute_names("#b", "bucket")
            .expression_attribute_values(":b", AttributeValue::S(bucket.clone()))
            .scan_index_forward(false)
            .limit(200)
            .send()
            .await
            .expect("query");
        query_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        ddb.get_item()
            .table_name(&names.events_table)
            .key("id", AttributeValue::S("bench-000100".into()))
            .send()
            .await
            .expect("get");
        get_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (query, get) = (median(query_ms), median(get_ms));
    println!(
        "  baseline: one index query {query:.0} ms, one read by id {get:.1} ms (medians of 5)"
    );
    println!(
        "  {:<34} {:>9} {:>14}   target <= 200 ms",
        "page", "median ms", "x 1 query"
    );
    for page in [
        "/handlers",
        "/handlers/2",
        "/logs",
        "/logs?outcome=failed",
        "/logs?event=clients.update&status=5xx",
        "/events",
        "/events?status=dead",
        "/events?key=client:7",
        "/events/bench-000100",
        "/revisions",
        "/queue",
    ] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = http
                .get(format!("http://127.0.0.1:{port}{page}"))
                .send()
                .await
                .expect("page");
            let status = r.status();
            let body = r.bytes().await.expect("body");
            assert!(
                status.is_success(),
                "{page}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let ms = median(times);
        println!(
            "  {page:<34} {ms:>9.0} {:>14.1}   {}",
            ms / query,
            if ms <= 200.0 { "met" } else { "NOT met" }
        );
    }
}
