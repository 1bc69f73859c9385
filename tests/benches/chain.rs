//! The after chain against a local sink, next to a plain reqwest loop doing
//! the same POSTs in the same run, plus the engine's own CPU cost per call
//! with an in-memory target, and the same chain behind mutual TLS (a TLS
//! sink that requires a client certificate). Prints figures; asserts
//! nothing (shared machines are noisy). Run with `make bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::Utc;
use cpu_time::ThreadTime;
use hooks_core::chain::{Progress, Unguarded, run_after};
use hooks_core::config::{Config, ParseOptions, Phase};
use hooks_core::events::Event;
use hooks_core::metrics::Metrics;
use hooks_core::protocol::{EventEnvelope, request_body};
use hooks_core::targets::{
    Call, HttpCaller, HttpOptions, Invoker, NetworkPolicy, Reply, ScriptOptions, ScriptRunner,
    Secrets, Targets,
};
use hooks_tests::tls::{Ca, Endpoint};
use serde_json::json;

const HANDLERS: u32 = 10;
const EVENTS: u32 = 200;
const ROUNDS: usize = 5;

/// Answers every POST with 204, on its own thread and runtime so that the
/// client side's CPU time is measured alone.
fn start_sink() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(|_body: Bytes| async { StatusCode::NO_CONTENT });
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// A condition as engineers write them, true for the bench's events: every
/// handler evaluates it.
const WHEN: &str = r#"data.custom_fields.segment in ["enterprise", "pro"] && data.client_id >= 0"#;

fn config(url: &str) -> Config {
    config_when(url, "")
}

/// The handlers behind mutual TLS: one client certificate for all (one
/// identity, one client, its connections shared).
const TLS: &str = r#", tls = { client_cert = { env = "C_CERT" }, client_key = { env = "C_KEY" }, ca = { env = "SERVER_CA" } }"#;

fn config_when(url: &str, when: &str) -> Config {
    config_of(url, when, "")
}

fn config_of(url: &str, when: &str, tls: &str) -> Config {
    let mut src = String::from("version = 1\n");
    let when = if when.is_empty() {
        String::new()
    } else {
        format!("when = '{when}'\n")
    };
    for id in 1..=HANDLERS {
        src.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"handler {id}\"\nevent = \"clients.create\"\npriority = {id}\n{when}http = {{ url = \"{url}/h{id}\"{tls} }}\n"
        ));
    }
    Config::parse("bench.toml", &src, &ParseOptions::default()).unwrap()
}

fn event(n: u32) -> EventEnvelope {
    let data = json!({
        "client_id": n, "name": "ACME Telecom Ltd", "email": "billing@acme.example",
        "balance": "120.50", "currency": "EUR", "tariff": "business-2026",
        "custom_fields": {"vat_id": "DE123456789", "segment": "enterprise", "region": "eu-central"},
        "accounts": [{"id": 1, "login": "acme-1"}, {"id": 2, "login": "acme-2"}]
    });
    EventEnvelope {
        id: format!("bench-{n}"),
        event: Event::ClientsCreate,
        occurred_at: Utc::now(),
        data: data.as_object().cloned().unwrap(),
        // As ingest sends them: each event with its trace, each call a span.
        trace: Some(hooks_core::trace::TraceParent::new_root()),
    }
}

struct Sample {
    wall: Duration,
    cpu: Duration,
}

async fn engine_round(targets: &impl Invoker, c: &Config) -> Sample {
    engine_round_with(targets, c, None).await
}

/// With `metrics`, each run's calls are tallied and the tally written out
/// every 10 events (a batch), as dispatch does.
async fn engine_round_with(
    targets: &impl Invoker,
    c: &Config,
    metrics: Option<&Metrics>,
) -> Sample {
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let (wall0, cpu0) = (Instant::now(), ThreadTime::now());
    for n in 0..EVENTS {
        let ev = event(n);
        let run = run_after(
            targets,
            &chain,
            &c.defaults,
            &ev,
            Progress::new(ev.data.clone()),
            None,
            &mut Unguarded,
        )
        .await;
        assert_eq!(run.handlers.len(), HANDLERS as usize);
        if let Some(m) = metrics {
            m.calls(&run.handlers);
            if n % 10 == 9 {
                std::hint::black_box(m.drain(Utc::now()));
            }
        }
    }
    Sample {
        wall: wall0.elapsed(),
        cpu: cpu0.elapsed(),
    }
}

async fn plain_round(client: &reqwest::Client, url: &str, c: &Config) -> Sample {
    let (wall0, cpu0) = (Instant::now(), ThreadTime::now());
    for n in 0..EVENTS {
        let ev = event(n);
        for h in c.chain_for(Event::ClientsCreate, Phase::After) {
            let body = request_body(&ev, h, 1, &ev.data);
            let resp = client
                .post(format!("{url}/h{}", h.id))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            let _ = resp.bytes().await.unwrap();
        }
    }
    Sample {
        wall: wall0.elapsed(),
        cpu: cpu0.elapsed(),
    }
}

/// Answers at once, without any I/O: what the engine costs by itself.
struct Instant204;

impl Invoker for Instant204 {
    async fn invoke(&self, _call: &Call<'_>) -> Reply {
        Reply::ok(Some(204), Bytes::new())
    }
}

/// The TLS sink, on its own thread and runtime (as the plain sink): its
/// URL, the certificate and key of a client it accepts, and its CA.
fn start_tls_sink() -> (String, String, String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let servers = Ca::new("servers CA");
            let clients = Ca::new("clients CA");
            let endpoint = Endpoint::start(&servers.issue("sink", false, false), &clients).await;
            let (cert, key) = clients.issue("hooks", true, false);
            tx.send((
                endpoint.url.trim_end_matches("/hooks").to_owned(),
                cert,
                key,
                servers.pem,
            ))
            .unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let addr = start_sink();
    let url = format!("http://{addr}");
    let c = config(&url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = HttpCaller::new(HttpOptions {
        policy: NetworkPolicy::parse("127.0.0.0/8").unwrap(),
        secrets: Secrets::default(),
        ..HttpOptions::default()
    })
    .unwrap();
    let targets = Targets::new(http, ScriptRunner::new(ScriptOptions::new(".")));
    let client = reqwest::Client::new();
    let calls = f64::from(EVENTS * HANDLERS);

    let (tls_url, cert, key, ca) = start_tls_sink();
    let mutual = config_of(&tls_url, "", TLS);
    let tls_targets = Targets::new(
        HttpCaller::new(HttpOptions {
            policy: NetworkPolicy::parse("127.0.0.0/8").unwrap(),
            secrets: Secrets::new(
                [("C_CERT", &cert), ("C_KEY", &key), ("SERVER_CA", &ca)]
                    .map(|(k, v)| (k.to_owned(), v.clone())),
                "bench",
            ),
            ..HttpOptions::default()
        })
        .unwrap(),
        ScriptRunner::new(ScriptOptions::new(".")),
    );
    let tls_client = reqwest::Client::builder()
        .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap())
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (mut engine_tls, mut plain_tls) = (Vec::new(), Vec::new());

    let conditional = config_when(&url, WHEN);
    let metrics = Metrics::new("bench");
    let (mut engine, mut plain, mut null) = (Vec::new(), Vec::new(), Vec::new());
    let (mut null_when, mut null_metrics) = (Vec::new(), Vec::new());
    rt.block_on(async {
        // Warm up connections and caches.
        engine_round(&targets, &c).await;
        plain_round(&client, &url, &c).await;
        engine_round(&tls_targets, &mutual).await;
        plain_round(&tls_client, &tls_url, &mutual).await;
        for _ in 0..ROUNDS {
            engine_tls.push(engine_round(&tls_targets, &mutual).await);
            plain_tls.push(plain_round(&tls_client, &tls_url, &mutual).await);
            engine.push(engine_round(&targets, &c).await);
            plain.push(plain_round(&client, &url, &c).await);
            null.push(engine_round(&Instant204, &c).await);
            null_when.push(engine_round(&Instant204, &conditional).await);
            null_metrics.push(engine_round_with(&Instant204, &c, Some(&metrics)).await);
        }
    });
    let wall = |s: &[Sample]| median(s.iter().map(|x| x.wall).collect());
    let cpu = |s: &[Sample]| median(s.iter().map(|x| x.cpu).collect());
    let per_sec = |d: Duration| calls / d.as_secs_f64();
    let us_per_call = |d: Duration| d.as_secs_f64() * 1e6 / calls;

    let (ew, pw) = (wall(&engine), wall(&plain));
    let ratio = per_sec(ew) / per_sec(pw);
    println!(
        "after chain, {HANDLERS} http handlers x {EVENTS} events = {calls} calls per round; median of {ROUNDS} rounds"
    );
    println!(
        "  plain reqwest loop : {:>8.0} calls/s   client CPU {:>6.1} us/call",
        per_sec(pw),
        us_per_call(cpu(&plain))
    );
    println!(
        "  engine (run_after) : {:>8.0} calls/s   client CPU {:>6.1} us/call",
        per_sec(ew),
        us_per_call(cpu(&engine))
    );
    println!(
        "  throughput ratio engine/plain: {ratio:.3}  (target >= 0.9: {})",
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
    let overhead = us_per_call(cpu(&engine)) - us_per_call(cpu(&plain));
    println!("  engine CPU over plain reqwest: {overhead:>6.1} us/call");
    let alone = us_per_call(cpu(&null));
    println!(
        "  engine CPU alone (in-memory target, no network): {alone:.1} us/call  (target <= 20 us: {})",
        if alone <= 20.0 { "met" } else { "NOT met" }
    );
    let with_when = us_per_call(cpu(&null_when));
    println!(
        "  ... with a `when` condition on every handler: {with_when:.1} us/call ({:+.1}; ratio {:.2})",
        with_when - alone,
        with_when / alone
    );
    let with_metrics = us_per_call(cpu(&null_metrics));
    println!(
        "  ... with the metrics tally (EMF lines every 10 events): {with_metrics:.1} us/call ({:+.1}; ratio {:.2})",
        with_metrics - alone,
        with_metrics / alone
    );
    let (etw, ptw) = (wall(&engine_tls), wall(&plain_tls));
    println!("behind mutual TLS (one client certificate for the {HANDLERS} handlers):");
    println!(
        "  plain reqwest loop : {:>8.0} calls/s   client CPU {:>6.1} us/call",
        per_sec(ptw),
        us_per_call(cpu(&plain_tls))
    );
    println!(
        "  engine (run_after) : {:>8.0} calls/s   client CPU {:>6.1} us/call",
        per_sec(etw),
        us_per_call(cpu(&engine_tls))
    );
    println!(
        "  throughput ratio engine/plain: {:.3}; engine with mTLS / engine over http: {:.3}",
        per_sec(etw) / per_sec(ptw),
        per_sec(etw) / per_sec(ew)
    );
}
