//! The pipeline's figures, each next to a baseline measured in the same run.
//! Prints; asserts nothing. Run with `make bench` (which builds the release
//! binaries first).
//!
//! 1. ingest: CPU per event for parse + validate + authenticate + serialize,
//!    next to a bare serde_json parse + serialize of the same body.
//! 2. start-up: process start → first request to the Runtime API, for ingest
//!    and dispatch, next to a hello-world lambda_runtime binary.
//! 3. dispatch: peak RSS for one batch of 10 events × 20 handlers, next to the
//!    hello-world binary after one invocation.
//! 4. local end to end: ingest accepted → first handler call, p50 and p90
//!    over 200 events, under `cargo lambda watch` (debug builds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use cpu_time::ThreadTime;
use hooks_core::events::Event;
use hooks_core::ingest::{Authenticator, parse_events};
use hooks_core::protocol::EventEnvelope;
use hooks_core::queue::Queue;
use hooks_core::records::QueuedEvent;
use hooks_core::settings::ResourceNames;
use hooks_core::signature::SigningKey;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::sync::{Source, apply, plan_against};
use hooks_local::{bootstrap, sqs_event};
use hooks_tests::{Answer, Emulator, FakeRuntime, Receiver, Stack, unique};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn release(bin: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(bin)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn body(n: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("evt-{i}"), "event": "clients.create", "occurred_at": "2026-11-26T10:00:00Z",
                   "data": {"client_id": i, "name": "ACME Telecom Ltd", "email": "billing@acme.example", "balance": "120.50",
                            "currency": "EUR", "tariff": "business-2026", "custom_fields": {"vat_id": "DE123456789", "segment": "enterprise"}}})
        })
        .collect();
    if n == 1 {
        serde_json::to_vec(&events[0]).unwrap()
    } else {
        serde_json::to_vec(&events).unwrap()
    }
}

fn ingest_cpu() {
    let auth = Authenticator::from_lists("", SECRET).unwrap();
    let key = SigningKey::parse(SECRET).unwrap();
    println!(
        "1. ingest CPU per event (parse + validate + authenticate + serialize), median of 5 rounds"
    );
    for n in [1usize, 10] {
        let b = body(n);
        let ts = Utc::now().timestamp();
        let sig = key.sign("msg_1", ts, &b);
        let ts_s = ts.to_string();
        let rounds = 20_000 / n;
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = ThreadTime::now();
            for _ in 0..rounds {
                let h = |name: &str| match name {
                    "webhook-id" => Some("msg_1"),
                    "webhook-timestamp" => Some(ts_s.as_str()),
                    "webhook-signature" => Some(sig.as_str()),
                    _ => None,
                };
                auth.check(h, &b, Utc::now()).unwrap();
                let events = parse_events(&b, Utc::now(), || "generated".into()).unwrap();
                for e in &events {
                    std::hint::black_box(serde_json::to_string(e).unwrap());
                }
            }
            ours.push(t.elapsed());
            let t = ThreadTime::now();
            for _ in 0..rounds {
                let v: Value = serde_json::from_slice(&b).unwrap();
                std::hint::black_box(v.to_string());
            }
            bare.push(t.elapsed());
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * n) as f64;
        let (o, p) = (per(median(ours)), per(median(bare)));
        println!(
            "   batch of {n:>2}: {o:>6.1} us/event (bare serde_json parse+serialize {p:>5.1} us; ratio {:.1}x)  target <= 50 us: {}",
            o / p,
            if o <= 50.0 { "met" } else { "NOT met" }
        );
    }
}

fn spawn(bin: &PathBuf, runtime: &FakeRuntime, env: &[(&str, String)]) -> Child {
    Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", runtime.api())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("RUST_LOG", "error")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Start-up samples per binary.
const ROUNDS: usize = 41;

async fn startup() {
    println!(
        "2. start-up: process start -> first request to the Runtime API (release builds), median of {ROUNDS} interleaved rounds"
    );
    let env = vec![
        ("HOOKS_INGEST_TOKENS", "t".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "x".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "x".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    // Interleaved rounds: the machine's drift (it is shared) touches every
    // binary alike, and the ratios compare like with like.
    let bins = ["hello-lambda", "ingest", "dispatch"];
    for bin in bins {
        if !release(bin).exists() {
            println!("   {bin}: not built (make bench builds it)");
            return;
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); bins.len()];
    for _ in 0..ROUNDS {
        for (i, bin) in bins.iter().enumerate() {
            let rt = FakeRuntime::start().await;
            let started = Instant::now();
            let mut child = spawn(&release(bin), &rt, &env);
            let first = loop {
                if let Some(t) = rt.first_request() {
                    break t;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            times[i].push(first - started);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let results: Vec<(&str, Duration)> = bins
        .iter()
        .zip(times)
        .map(|(bin, t)| (*bin, median(t)))
        .collect();
    let hello = results[0].1;
    for (bin, t) in &results {
        let ratio = t.as_secs_f64() / hello.as_secs_f64();
        let mark = if *bin == "hello-lambda" {
            String::new()
        } else {
            format!(
                "  target <= 1.5x: {}",
                if ratio <= 1.5 { "met" } else { "NOT met" }
            )
        };
        println!(
            "   {bin:<13} {:>6.2} ms  ({ratio:.2}x hello-world){mark}",
            t.as_secs_f64() * 1000.0
        );
    }
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_answer(rt: &FakeRuntime, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        if let Some((_, v)) = rt.answers().into_iter().next() {
            return v;
        }
        assert!(started.elapsed() < limit, "no answer from the function");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dispatch_memory() {
    println!("3. dispatch peak RSS, one batch of 10 events x 20 handlers (release build)");
    let sink = Receiver::start().await;
    let emu = Emulator::start();
    let names = ResourceNames::prefixed(&unique("bench"));
    let sdk = emu.sdk_config().await;
    bootstrap(&sdk, &names).await.unwrap();
    let mut toml = String::from("version = 1\n");
    for id in 1..=20 {
        toml.push_str(&format!("[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"clients.create\"\npriority = {id}\nhttp = {{ url = \"{}\" }}\n", sink.url(&format!("/h{id}"))));
    }
    sink.always(
        "/h1",
        Answer::json(json!({"data": {"client_id": 1, "softswitch_id": "sw-1"}})),
    );
    let store = DynamoConfigStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &names.config_table,
        emu.endpoint(),
    );
    let config = hooks_core::config::Config::parse("b.toml", &toml, &Default::default()).unwrap();
    let source = Source {
        file: "b.toml".into(),
        text: toml.clone(),
        git_commit: None,
        synced_by: "bench".into(),
    };
    apply(&store, &plan_against(&store, config, source).await.unwrap())
        .await
        .unwrap();
    let queue = Queue::resolve(
        aws_sdk_sqs::Client::new(&sdk),
        emu.endpoint(),
        &names.queue,
        &names.dead_letter_queue,
    )
    .await
    .unwrap();
    let events: Vec<QueuedEvent> = (0..10)
        .map(|i| QueuedEvent {
            event: EventEnvelope {
                id: format!("m-{i}"),
                event: Event::ClientsCreate,
                occurred_at: Utc::now(),
                data: json!({"client_id": i}).as_object().cloned().unwrap(),
            },
            key: format!("client:{i}"),
            received_at: Utc::now(),
        })
        .collect();
    queue.send(&events).await.unwrap();
    let mut messages = Vec::new();
    while messages.len() < 10 {
        messages.extend(
            queue
                .receive(false, 10, Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    let mut env = emu.env();
    env.extend(names.env());
    env.push(("HOOKS_ALLOW_NETWORKS", "127.0.0.0/8".into()));
    let rt = FakeRuntime::start().await;
    let mut child = spawn(&release("dispatch"), &rt, &env);
    rt.invoke(sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q"));
    let answer = wait_answer(&rt, Duration::from_secs(120)).await;
    let dispatch_kb = peak_rss_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let failures = answer["batchItemFailures"]
        .as_array()
        .map_or(usize::MAX, Vec::len);
    let rt = FakeRuntime::start().await;
    let mut hello = spawn(&release("hello-lambda"), &rt, &[]);
    rt.invoke(json!({"hello": "world"}));
    wait_answer(&rt, Duration::from_secs(10)).await;
    let hello_kb = peak_rss_kb(hello.id());
    let _ = hello.kill();
    let _ = hello.wait();
    println!(
        "   dispatch {:.1} MB ({} handler calls, {failures} failed records) vs hello-world {:.1} MB  target <= 32 MB: {}",
        dispatch_kb as f64 / 1024.0,
        sink.received().len(),
        hello_kb as f64 / 1024.0,
        if dispatch_kb <= 32 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
}

async fn end_to_end() {
    println!(
        "4. local end to end: ingest accepted -> first handler call, 200 events (cargo lambda watch, debug builds)"
    );
    let sink = Receiver::start().await;
    let toml = format!(
        "version = 1\n[[handler]]\nid = 1\nname = \"first\"\nevent = \"clients.*\"\npriority = 1\nhttp = {{ url = \"{}\" }}\n",
        sink.url("/first")
    );
    let stack = Stack::start(&toml).await;
    // Warm up: the first request builds and starts the functions.
    stack
        .post(
            "/events",
            &json!({"id": "warm", "event": "clients.update", "data": {"client_id": 0}}),
        )
        .await;
    stack
        .wait_for("warm", "succeeded", Duration::from_secs(180))
        .await;
    let mut accepted = Vec::new();
    for i in 0..200 {
        let (status, _) = stack.post("/events", &json!({"id": format!("lat-{i}"), "event": "clients.update", "data": {"client_id": i}})).await;
        assert_eq!(status, 202);
        accepted.push((format!("lat-{i}"), Instant::now()));
    }
    stack
        .wait_for("lat-199", "succeeded", Duration::from_secs(300))
        .await;
    let calls = sink.received();
    let mut lat: Vec<Duration> = accepted
        .iter()
        .filter_map(|(id, at)| {
            calls
                .iter()
                .find(|c| c.json()["id"] == id.as_str())
                .map(|c| c.at.saturating_duration_since(*at))
        })
        .collect();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "   {} events: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        lat.len(),
        p(0.5),
        p(0.9),
        p(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    ingest_cpu();
    startup().await;
    dispatch_memory().await;
    end_to_end().await;
}
