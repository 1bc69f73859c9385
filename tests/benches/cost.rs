//! What a million events cost on AWS, counted rather than estimated: the
//! whole local stack with the release functions, every AWS call metered by
//! the gateway as AWS bills it (hooks-local's `meter`), per scenario:
//! - DynamoDB read and write request units (every index write included);
//! - SQS requests (per call and per started 64 KiB; receives that return
//!   nothing are the event source mapping's idle polling, a cost per hour,
//!   not per event, and are left out);
//! - Lambda requests, and GB-seconds: each invocation's time from request
//!   to answer (an upper bound: it includes the local runtime's hop),
//!   rounded up to the millisecond, × the template's memory, timed in a run
//!   of its own with the meter paused;
//! - Secrets Manager calls;
//! - CloudWatch Logs ingestion: what the functions print, plus about 250
//!   bytes of Lambda's own lines (START, END, REPORT) per invocation;
//! - storage: the event records, which hold their calls (the execution
//!   log), and their index entries (100 bytes of overhead each), kept for
//!   their 30-day TTL.
//!
//! Prices: us-east-1, on demand (see BENCHMARKS.md for the pages).
//!
//! Then, with the meter paused, the local throughput: 1,000 events over 100
//! keys, 3 handlers answering 204, billing sending batches of 10 as fast as
//! ingest answers; events per second, and p50/p99 from ingest's 202 to the
//! last handler's call. Prints; asserts nothing. `make cost` (also part of
//! `make bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use hooks_local::meter::{self, Projection, TableShape, Units};
use hooks_tests::Stack;
use serde_json::{Value, json};

/// Prices in dollars, us-east-1, on demand.
mod price {
    pub(crate) const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Arm64, per GB-second.
    pub(crate) const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub(crate) const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    pub(crate) const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    pub(crate) const DYNAMODB_GB_MONTH: f64 = 0.25;
    pub(crate) const SQS_FIFO_REQUEST: f64 = 0.50 / 1e6;
    pub(crate) const SECRETS_CALL: f64 = 0.05 / 10_000.0;
    pub(crate) const LOGS_INGESTED_GB: f64 = 0.50;
    pub(crate) const EVENTBRIDGE_EVENT: f64 = 1.00 / 1e6;
    pub(crate) const EVENTBRIDGE_API_DESTINATION: f64 = 0.20 / 1e6;
}

/// The template's `MemorySize` (Globals), in GB.
const MEMORY_GB: f64 = 0.25;
/// Lambda's own log lines per invocation, about.
const PLATFORM_LOG_BYTES: u64 = 250;
const RECORD_KEEP_MONTHS: f64 = 30.0 / 30.44;
/// DynamoDB's storage overhead per item and per index entry.
const ITEM_OVERHEAD: u64 = 100;

const EVENTS: usize = 100;
const KEYS: usize = 20;

/// The handler endpoints: `/ok` answers 204; `/flaky` 503 to a first
/// attempt, then 204.
/// When each event's last handler was called (`/last`).
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn endpoint(arrivals: Arrivals) -> SocketAddr {
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let arrivals = arrivals.clone();
        async move {
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if uri.path() == "/flaky" && req["attempt"].as_u64() == Some(1) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            if uri.path() == "/last"
                && let Some(id) = req["id"].as_str()
            {
                arrivals
                    .lock()
                    .unwrap()
                    .entry(id.to_owned())
                    .or_insert_with(Instant::now);
            }
            StatusCode::NO_CONTENT.into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

struct Scenario {
    name: &'static str,
    event: &'static str,
    decision: bool,
    /// After handlers the event reaches (for EventBridge's price).
    fan_out: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "1 after handler",
        event: "clients.create",
        decision: false,
        fan_out: 1,
    },
    Scenario {
        name: "3 after handlers",
        event: "clients.update",
        decision: false,
        fan_out: 3,
    },
    Scenario {
        name: "10 after handlers",
        event: "accounts.create",
        decision: false,
        fan_out: 10,
    },
    Scenario {
        name: "3 after, one fails once",
        event: "accounts.update",
        decision: false,
        fan_out: 3,
    },
    Scenario {
        name: "decision, 2 before",
        event: "subscriptions.assign",
        decision: true,
        fan_out: 0,
    },
];

fn handlers(addr: SocketAddr) -> String {
    // Every event's first call to /flaky fails: 100 failures in a row, which
    // would pause the handler (pause_after = 10 by default) and make the run
    // about waiting for probes. A threshold it never reaches keeps it about
    // a retry, with the failures still counted (one write unit each).
    let mut toml = String::from(
        "version = 1\n[defaults]\nretry = { schedule = [\"1s\", \"1s\", \"1s\"] }\npause_after = 1000\n",
    );
    let mut id = 0;
    let mut add = |event: &str, phase: &str, path: &str| {
        id += 1;
        toml.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"{event}\"\nphase = \"{phase}\"\npriority = {id}\nhttp = {{ url = \"http://{addr}{path}\", timeout = \"5s\" }}\n"
        ));
    };
    add("clients.create", "after", "/ok");
    add("clients.update", "after", "/ok");
    add("clients.update", "after", "/ok");
    add("clients.update", "after", "/last");
    for _ in 0..10 {
        add("accounts.create", "after", "/ok");
    }
    add("accounts.update", "after", "/ok");
    add("accounts.update", "after", "/flaky");
    add("accounts.update", "after", "/ok");
    for _ in 0..2 {
        add("subscriptions.assign", "before", "/ok");
    }
    toml
}

/// A realistic body: a client with a few fields.
fn event(id: &str, event: &str, k: usize) -> Value {
    json!({"id": id, "event": event, "key": format!("client:{k}"), "occurred_at": "2026-12-01T10:00:00Z",
           "data": {"client_id": k, "name": "ACME Telecom Ltd", "email": "billing@acme.example", "balance": "120.50",
                    "currency": "EUR", "tariff": "business-2026", "custom_fields": {"vat_id": "DE123456789"}}})
}

/// Every item of a table, whole.
async fn scan(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Value> {
    let mut pages = ddb.scan().table_name(table).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for item in page.unwrap().items() {
            out.push(wire(item));
        }
    }
    out
}

/// An item in DynamoDB's JSON wire form (what the meter sizes).
fn wire(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    fn one(v: &AttributeValue) -> Value {
        match v {
            AttributeValue::S(s) => json!({"S": s}),
            AttributeValue::N(n) => json!({"N": n}),
            AttributeValue::Bool(b) => json!({"BOOL": b}),
            AttributeValue::Null(_) => json!({"NULL": true}),
            AttributeValue::L(l) => json!({"L": l.iter().map(one).collect::<Vec<_>>()}),
            AttributeValue::M(m) => {
                json!({"M": m.iter().map(|(k, v)| (k.clone(), one(v))).collect::<serde_json::Map<_, _>>()})
            }
            AttributeValue::Ss(s) => json!({"SS": s}),
            AttributeValue::Ns(s) => json!({"NS": s}),
            AttributeValue::B(b) => json!({"B": "x".repeat(b.as_ref().len() * 4 / 3)}),
            _ => json!({"NULL": true}),
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), one(v))).collect())
}

/// Bytes an item keeps stored: itself and its index entries, with overhead.
fn stored_bytes(item: &Value, shape: &TableShape) -> u64 {
    let mut bytes = meter::item_size(item) + ITEM_OVERHEAD;
    let o = item.as_object().unwrap();
    for ix in &shape.indexes {
        if !ix.keys.iter().all(|k| o.contains_key(k)) {
            continue;
        }
        let entry = match &ix.projection {
            Projection::All => meter::item_size(item),
            _ => o
                .iter()
                .filter(|(k, _)| shape.keys.contains(k) || ix.keys.contains(k))
                .map(|(k, v)| meter::item_size(&json!({ k.clone(): v.clone() })))
                .sum(),
        };
        bytes += entry + ITEM_OVERHEAD;
    }
    bytes
}

async fn shape(ddb: &aws_sdk_dynamodb::Client, table: &str) -> TableShape {
    let d = ddb.describe_table().table_name(table).send().await.unwrap();
    let t = d.table().unwrap();
    let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<String> {
        ks.iter().map(|k| k.attribute_name().to_owned()).collect()
    };
    TableShape {
        keys: keys(t.key_schema()),
        indexes: t
            .global_secondary_indexes()
            .iter()
            .map(|ix| meter::IndexShape {
                name: ix.index_name().unwrap_or("").to_owned(),
                keys: keys(ix.key_schema()),
                projection: match ix.projection().and_then(|p| p.projection_type()) {
                    Some(aws_sdk_dynamodb::types::ProjectionType::KeysOnly) => Projection::KeysOnly,
                    Some(aws_sdk_dynamodb::types::ProjectionType::Include) => Projection::Include(
                        ix.projection()
                            .map(|p| p.non_key_attributes().to_vec())
                            .unwrap_or_default(),
                    ),
                    _ => Projection::All,
                },
            })
            .collect(),
    }
}

/// One run's counts, per event.
#[derive(Debug, Default)]
struct Cost {
    units: Units,
    lambda_requests: f64,
    lambda_ms: f64,
    log_bytes: f64,
    stored_record_bytes: f64,
    sqs_per_event: f64,
    secrets_per_event: f64,
}

impl Cost {
    /// Dollars per event, by charge.
    fn dollars(&self) -> BTreeMap<&'static str, f64> {
        BTreeMap::from([
            (
                "dynamodb writes",
                self.units.write_units * price::DYNAMODB_WRITE_UNIT,
            ),
            (
                "dynamodb reads",
                self.units.read_units * price::DYNAMODB_READ_UNIT,
            ),
            (
                "dynamodb storage",
                (self.stored_record_bytes * RECORD_KEEP_MONTHS) / 1e9 * price::DYNAMODB_GB_MONTH,
            ),
            ("sqs", self.sqs_per_event * price::SQS_FIFO_REQUEST),
            (
                "lambda",
                self.lambda_requests * price::LAMBDA_REQUEST
                    + self.lambda_ms / 1000.0 * MEMORY_GB * price::LAMBDA_GB_SECOND,
            ),
            (
                "secrets manager",
                self.secrets_per_event * price::SECRETS_CALL,
            ),
            (
                "cloudwatch logs",
                self.log_bytes / 1e9 * price::LOGS_INGESTED_GB,
            ),
        ])
    }
}

/// Runs a scenario twice: once with the meter paused, for the functions'
/// time (metering slows every write down), once metered, for the units.
async fn run(
    stack: &Stack,
    ddb: &aws_sdk_dynamodb::Client,
    s: &Scenario,
    batch: usize,
    tag: &str,
) -> Cost {
    stack.running.gateway.set_metering(false);
    let timed = run_once(stack, ddb, s, batch, &format!("{tag}t")).await;
    stack.running.gateway.set_metering(true);
    let mut counted = run_once(stack, ddb, s, batch, tag).await;
    counted.lambda_ms = timed.lambda_ms;
    counted
}

async fn run_once(
    stack: &Stack,
    ddb: &aws_sdk_dynamodb::Client,
    s: &Scenario,
    batch: usize,
    tag: &str,
) -> Cost {
    let gateway = &stack.running.gateway;
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("{tag}-{i}")).collect();
    let log_before = std::fs::metadata(stack.log_path()).map_or(0, |m| m.len());
    let lines_before = stack.log().lines().count();
    gateway.reset_units();
    let invoked_before = *stack.running.invocations.lock().unwrap();
    let mut ingest_ms = 0u64;
    let mut requests = 0u64;
    for chunk in ids.chunks(batch) {
        let bodies: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| event(id, s.event, (requests as usize * batch + i) % KEYS))
            .collect();
        let (path, body) = if s.decision {
            ("/decisions", bodies[0].clone())
        } else if batch == 1 {
            ("/events", bodies[0].clone())
        } else {
            ("/events", Value::Array(bodies))
        };
        let started = Instant::now();
        let (status, answer) = stack.post(path, &body).await;
        ingest_ms += started.elapsed().as_micros().div_ceil(1000) as u64;
        requests += 1;
        assert!(status == 200 || status == 202, "{status} {answer}");
    }
    // Wait for every event to finish (a decision has nothing queued).
    if !s.decision {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let items = scan(ddb, &stack.names.events_table).await;
            let done = items
                .iter()
                .filter(|i| {
                    i["id"]["S"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&format!("{tag}-")))
                        && i["status"]["S"] == "succeeded"
                })
                .count();
            if done == EVENTS || Instant::now() > deadline {
                assert_eq!(done, EVENTS, "not every event succeeded");
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Let the last writes and answers land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let units = gateway.units();
    let mut used = Units::default();
    for who in ["ingest", "dispatch"] {
        if let Some(u) = units.get(who) {
            used.add(u);
        }
    }
    let invoked = *stack.running.invocations.lock().unwrap();
    let dispatch_invocations = invoked.count - invoked_before.count;
    let dispatch_ms = invoked.billed_ms - invoked_before.billed_ms;
    let printed = std::fs::metadata(stack.log_path()).map_or(0, |m| m.len()) - log_before;
    let lines = stack.log().lines().count() - lines_before;
    // The runner prefixes each line with `[function] ` (about 10 bytes).
    let function_bytes = printed.saturating_sub(lines as u64 * 10);
    let invocations = requests + dispatch_invocations;

    // What stays stored.
    let events_shape = shape(ddb, &stack.names.events_table).await;
    let mine = |i: &Value, attr: &str| -> bool {
        i[attr]["S"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{tag}-")))
    };
    let records: Vec<Value> = scan(ddb, &stack.names.events_table)
        .await
        .into_iter()
        .filter(|i| mine(i, "id"))
        .collect();
    let n = EVENTS as f64;
    let mut per_event = used.clone();
    per_event.read_units /= n;
    per_event.write_units /= n;
    per_event.index_write_units /= n;
    Cost {
        units: per_event,
        lambda_requests: invocations as f64 / n,
        lambda_ms: (ingest_ms + dispatch_ms) as f64 / n,
        log_bytes: (function_bytes + invocations * PLATFORM_LOG_BYTES) as f64 / n,
        stored_record_bytes: records
            .iter()
            .map(|i| stored_bytes(i, &events_shape))
            .sum::<u64>() as f64
            / n,
        sqs_per_event: used.sqs_requests as f64 / n,
        secrets_per_event: used.secrets_calls as f64 / n,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let arrivals = Arrivals::default();
    let addr = endpoint(arrivals.clone()).await;
    let stack = Stack::start_release_metered(&handlers(addr)).await;
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    // `cargo bench --bench cost -- throughput` runs only the throughput.
    if std::env::args().skip(1).any(|a| a == "throughput") {
        throughput(&stack, &arrivals).await;
        return;
    }
    println!(
        "cost per event, {EVENTS} events over {KEYS} keys per run; release functions; units as AWS bills them\n"
    );
    let (mut three, mut three_batched) = (0.0, 0.0);
    for (si, s) in SCENARIOS.iter().enumerate() {
        let modes: &[usize] = if s.decision { &[1] } else { &[1, 10] };
        for &batch in modes {
            // One warm-up run first, so that the figures are of warm functions.
            if si == 0 && batch == 1 {
                run(&stack, &ddb, s, 1, "warm").await;
            }
            let tag = format!("s{si}b{batch}");
            let c = run(&stack, &ddb, s, batch, &tag).await;
            let dollars = c.dollars();
            let total: f64 = dollars.values().sum();
            let eventbridge = if s.fan_out > 0 {
                format!(
                    "${:.2}",
                    (price::EVENTBRIDGE_EVENT
                        + s.fan_out as f64 * price::EVENTBRIDGE_API_DESTINATION)
                        * 1e6
                )
            } else {
                "n/a".to_owned()
            };
            println!(
                "{} (billing sends {}): ${:.2} per million events (EventBridge API destinations: {eventbridge})",
                s.name,
                if batch == 1 {
                    "one per request".to_owned()
                } else {
                    format!("batches of {batch}")
                },
                total * 1e6
            );
            println!(
                "  per event: {:.2} write units ({:.2} of indexes), {:.2} read units, {:.2} SQS requests, {:.2} Lambda invocations, {:.1} ms, {:.0} B stored record, {:.0} B CloudWatch logs, {:.3} secret calls",
                c.units.write_units,
                c.units.index_write_units,
                c.units.read_units,
                c.sqs_per_event,
                c.lambda_requests,
                c.lambda_ms,
                c.stored_record_bytes,
                c.log_bytes,
                c.secrets_per_event,
            );
            let parts: Vec<String> = dollars
                .iter()
                .map(|(k, v)| format!("{k} ${:.3}", v * 1e6))
                .collect();
            println!("  per million: {}", parts.join(", "));
            let writes: Vec<String> = c
                .units
                .writes_by_table
                .iter()
                .map(|(t, u)| {
                    format!(
                        "{} {:.2}",
                        t.rsplit_once('-').map_or(t.as_str(), |(_, x)| x),
                        u / EVENTS as f64
                    )
                })
                .collect();
            println!("  write units by table: {}", writes.join(", "));
            if s.name == "3 after handlers" {
                if batch == 1 {
                    three = total;
                } else {
                    three_batched = total;
                }
            }
        }
    }
    throughput(&stack, &arrivals).await;
    // Billing sending one event per request, the costlier case; batches
    // divide SQS's and Lambda's per-message charges by ten.
    println!(
        "3 after handlers: ${:.2} per million events (one per request; ${:.2} in batches of 10)",
        three * 1e6,
        three_batched * 1e6
    );
}

/// 1,000 events over 100 keys, 3 handlers, batches of 10 sent as fast as
/// ingest answers (four senders), the meter paused.
async fn throughput(stack: &Stack, arrivals: &Arrivals) {
    const N: usize = 1_000;
    const KEYS: usize = 100;
    stack.running.gateway.set_metering(false);
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|w| {
            let accepted = accepted.clone();
            let stack_url = stack.url("/events");
            let token = hooks_tests::TOKEN;
            tokio::spawn(async move {
                let http = reqwest::Client::builder().no_proxy().build().unwrap();
                for b in (w..N / 10).step_by(4) {
                    let batch: Vec<Value> = (b * 10..b * 10 + 10)
                        .map(|i| event(&format!("tp-{i}"), "clients.update", i % KEYS))
                        .collect();
                    let r = http
                        .post(&stack_url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(Value::Array(batch.clone()).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let now = Instant::now();
                    let mut a = accepted.lock().unwrap();
                    for e in &batch {
                        a.insert(e["id"].as_str().unwrap().to_owned(), now);
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let sent = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("tp-"))
        .count()
        < N
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = arrivals.lock().unwrap().clone();
    let accepted = accepted.lock().unwrap().clone();
    let last = done
        .iter()
        .filter(|(k, _)| k.starts_with("tp-"))
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(started);
    let mut latencies: Vec<Duration> = accepted
        .iter()
        .filter_map(|(id, a)| done.get(id).map(|d| d.saturating_duration_since(*a)))
        .collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "\nlocal throughput: {N} events over {KEYS} keys, 3 handlers answering 204, batches of 10 from 4 senders: sent in {:.1} s, all handled in {:.1} s: {:.0} events/s through the whole stack; 202 -> last handler's call p50 {:.0} ms, p99 {:.0} ms ({} of {N} arrived)",
        sent.as_secs_f64(),
        (last - started).as_secs_f64(),
        latencies.len() as f64 / (last - started).as_secs_f64(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.len(),
    );
}
