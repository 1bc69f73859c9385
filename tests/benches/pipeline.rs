//! The pipeline's figures, each next to a baseline measured in the same run.
//! Prints; asserts nothing. Run with `make bench` (which builds the release
//! binaries first).
//!
//! 1. ingest: CPU per event for parse + validate + authenticate + serialize,
//!    next to a bare serde_json parse + serialize of the same body.
//! 2. cold start: process start → end of init and → first answer, for ingest
//!    (GET /events/x) and dispatch (a batch of one event, one handler call),
//!    against the emulator, next to a hello-world lambda_runtime binary.
//! 3. dispatch: peak RSS for one batch of 10 events × 20 handlers, next to the
//!    hello-world binary after one invocation.
//! 4. local end to end: ingest accepted → handler call, p50 and p90 over 100
//!    events of other clients, without and with one client's handler timing
//!    out, under the same runner as `make dev` (debug builds).
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

/// Syncs `toml` as the live config of `names`; their events queue.
async fn live(
    emu: &Emulator,
    sdk: &aws_config::SdkConfig,
    names: &ResourceNames,
    toml: &str,
) -> Queue {
    let store = DynamoConfigStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &names.config_table,
        emu.endpoint(),
    );
    let config = hooks_core::config::Config::parse("b.toml", toml, &Default::default()).unwrap();
    let source = Source {
        file: "b.toml".into(),
        text: toml.to_owned(),
        git_commit: None,
        synced_by: "bench".into(),
    };
    apply(&store, &plan_against(&store, config, source).await.unwrap())
        .await
        .unwrap();
    Queue::resolve(
        aws_sdk_sqs::Client::new(sdk),
        emu.endpoint(),
        &names.queue,
        &names.dead_letter_queue,
    )
    .await
    .unwrap()
}

/// Start-up samples per binary.
const ROUNDS: usize = 21;

/// A function URL request for `GET path` with billing's token.
/// A function URL request, as Lambda hands it to ingest.
fn url_request(method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
    let mut v = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}"), "host": "x.lambda-url.us-east-1.on.aws",
                    "content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws",
            "domainPrefix": "x", "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        v["body"] = Value::String(b.to_string());
    }
    v
}

/// Process start → first request to the Runtime API (the init phase), and
/// → the first answer.
async fn cold_start(bin: &str, env: &[(&str, String)], event: Value) -> (Duration, Duration) {
    let rt = FakeRuntime::start().await;
    rt.invoke(event);
    let started = Instant::now();
    let mut child = spawn(&release(bin), &rt, env);
    let answered = loop {
        if !rt.answers().is_empty() {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{bin} did not answer"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let init = rt.first_request().unwrap_or(answered) - started;
    let _ = child.kill();
    let _ = child.wait();
    (init, answered - started)
}

async fn startup() {
    println!(
        "2. cold start (release builds), median of {ROUNDS} interleaved rounds: process start -> end of init (first request to the Runtime API) and -> first answer, against the emulator. ingest: POST /events with one event; dispatch: a batch of one event, one handler call; the functions load the secret in init and get the queues' URLs from the environment, as the template gives them. Baselines: hello-world, and sdk-lambda (the AWS SDK config loaded in init, one DynamoDB GetItem per invocation)"
    );
    let bins = ["hello-lambda", "sdk-lambda", "ingest", "dispatch"];
    for bin in bins {
        if !release(bin).exists() {
            println!("   {bin}: not built (make bench builds it)");
            return;
        }
    }
    let sink = Receiver::start().await;
    let emu = Emulator::start();
    let names = ResourceNames::prefixed(&unique("cold"));
    let sdk = emu.sdk_config().await;
    bootstrap(&sdk, &names).await.unwrap();
    let arn = hooks_local::put_secret(
        &sdk,
        &unique("cold-secret"),
        &[("HOOKS_INGEST_TOKENS".to_owned(), "t".to_owned())].into(),
    )
    .await
    .unwrap();
    let toml = format!(
        "version = 1\n[[handler]]\nid = 1\nname = \"h\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"{}\" }}\n",
        sink.url("/h")
    );
    let queue = live(&emu, &sdk, &names, &toml).await;
    let mut env = emu.env();
    env.extend(names.env());
    env.push(("HOOKS_SECRETS_ARN", arn));
    env.push(("HOOKS_ALLOW_NETWORKS", "127.0.0.0/8".into()));
    // As the template deploys them: the queues' URLs given, not looked up.
    env.push(("HOOKS_QUEUE_URL", queue.url().to_owned()));
    env.push(("HOOKS_DLQ_URL", queue.dlq_url().to_owned()));
    let mut times: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); bins.len()];
    for round in 0..ROUNDS {
        // A fresh event for dispatch each round: one handler call.
        let event = QueuedEvent {
            event: EventEnvelope {
                id: format!("cold-{round}"),
                event: Event::ClientsCreate,
                occurred_at: Utc::now(),
                data: json!({"client_id": round}).as_object().cloned().unwrap(),
                trace: None,
            },
            key: format!("client:{round}"),
            received_at: Utc::now(),
        };
        queue.send(&[event]).await.unwrap();
        let messages = queue
            .receive(false, 10, Duration::from_secs(2))
            .await
            .unwrap();
        let batch = sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q");
        let post = url_request(
            "POST",
            "/events",
            "t",
            Some(
                &json!({"id": format!("cold-post-{round}"), "event": "clients.create",
                         "data": {"client_id": round}}),
            ),
        );
        times[0].push(cold_start("hello-lambda", &[], json!({"hello": "world"})).await);
        times[1].push(cold_start("sdk-lambda", &env, json!({"hello": "world"})).await);
        times[2].push(cold_start("ingest", &env, post).await);
        times[3].push(cold_start("dispatch", &env, batch).await);
    }
    let med = |v: &[(Duration, Duration)], f: fn(&(Duration, Duration)) -> Duration| {
        median(v.iter().map(f).collect())
    };
    let hello = med(&times[0], |t| t.1);
    let sdk = med(&times[1], |t| t.1);
    for (bin, t) in bins.iter().zip(&times) {
        let (init, answer) = (med(t, |t| t.0), med(t, |t| t.1));
        println!(
            "   {bin:<13} init {:>6.2} ms, first invocation {:>6.2} ms, first answer {:>6.2} ms ({:.2}x sdk-lambda's, {:.1}x hello-world's)",
            init.as_secs_f64() * 1000.0,
            (answer - init).as_secs_f64() * 1000.0,
            answer.as_secs_f64() * 1000.0,
            answer.as_secs_f64() / sdk.as_secs_f64(),
            answer.as_secs_f64() / hello.as_secs_f64()
        );
    }
    println!(
        "   ({} handler calls made by dispatch)",
        sink.received().len()
    );
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
    let queue = live(&emu, &sdk, &names, &toml).await;
    let events: Vec<QueuedEvent> = (0..10)
        .map(|i| QueuedEvent {
            event: EventEnvelope {
                id: format!("m-{i}"),
                event: Event::ClientsCreate,
                occurred_at: Utc::now(),
                data: json!({"client_id": i}).as_object().cloned().unwrap(),
                trace: None,
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
    // As deployed: the secrets come from a Secrets Manager secret.
    let arn = hooks_local::put_secret(&sdk, &unique("mem-secret"), &Default::default())
        .await
        .unwrap();
    let mut env = emu.env();
    env.extend(names.env());
    env.push(("HOOKS_SECRETS_ARN", arn));
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

/// Posts `n` `clients.update` events of clients `first..first+n`, 20 ms
/// apart, and returns each one's time from accepted to its handler call.
async fn latencies(stack: &Stack, sink: &Receiver, tag: &str, first: u64, n: u64) -> Vec<Duration> {
    let mut accepted = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{i}");
        let (status, _) = stack
            .post(
                "/events",
                &json!({"id": id, "event": "clients.update", "data": {"client_id": first + i}}),
            )
            .await;
        assert_eq!(status, 202);
        accepted.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (id, _) in &accepted {
        stack
            .wait_for(id, "succeeded", Duration::from_secs(300))
            .await;
    }
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
    lat
}

fn quantile(lat: &[Duration], q: f64) -> f64 {
    lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0
}

async fn end_to_end() {
    println!(
        "4. local end to end (make dev's runner: cargo lambda watch, debug builds): ingest accepted -> handler call, 100 events of other clients, without and with one client's handler timing out"
    );
    let sink = Receiver::start().await;
    // One client's events go to a handler that never answers in time.
    sink.always("/stuck", Answer::ok().after(Duration::from_secs(30)));
    let toml = format!(
        "version = 1\n[defaults]\nretry = {{ schedule = [\"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"] }}\n[[handler]]\nid = 1\nname = \"first\"\nevent = \"clients.update\"\npriority = 1\nhttp = {{ url = \"{}\" }}\n[[handler]]\nid = 2\nname = \"stuck\"\nevent = \"clients.delete\"\npriority = 1\nhttp = {{ url = \"{}\", timeout = \"2s\" }}\n",
        sink.url("/first"),
        sink.url("/stuck")
    );
    let stack = Stack::start(&toml).await;
    // Warm up: the first requests start the functions' instances.
    for i in 0..5 {
        stack
            .post(
                "/events",
                &json!({"id": format!("warm-{i}"), "event": "clients.update", "data": {"client_id": i}}),
            )
            .await;
    }
    stack
        .wait_for("warm-4", "succeeded", Duration::from_secs(180))
        .await;
    let base = latencies(&stack, &sink, "base", 1000, 100).await;
    // The fault: client 1's events each wait 2 s for a handler that times
    // out, and are retried every second, blocking their key.
    for i in 0..20 {
        stack
            .post(
                "/events",
                &json!({"id": format!("stuck-{i}"), "event": "clients.delete", "data": {"client_id": 1}}),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fault = latencies(&stack, &sink, "fault", 2000, 100).await;
    let stuck_calls = sink
        .received()
        .iter()
        .filter(|c| c.path == "/stuck")
        .count();
    for (name, lat) in [
        ("no fault", &base),
        ("one client's handler timing out", &fault),
    ] {
        println!(
            "   {name:<32} {} events: p50 {:>5.0} ms, p90 {:>5.0} ms, max {:>5.0} ms",
            lat.len(),
            quantile(lat, 0.5),
            quantile(lat, 0.9),
            quantile(lat, 1.0)
        );
    }
    let (p50, base50) = (quantile(&fault, 0.5), quantile(&base, 0.5));
    println!(
        "   with the fault / without: p50 {:.2}x ({stuck_calls} calls to the stuck handler meanwhile)  target p50 < 300 ms with the fault: {}",
        p50 / base50,
        if p50 < 300.0 { "met" } else { "NOT met" }
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench --bench pipeline -- end_to_end` runs only the parts named.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if run("ingest_cpu") {
        ingest_cpu();
    }
    if run("startup") {
        startup().await;
    }
    if run("dispatch_memory") {
        dispatch_memory().await;
    }
    if run("end_to_end") {
        end_to_end().await;
    }
}
