//! The soak: events over many keys through the whole local stack (as `make
//! dev` runs it), with handler failures injected — 5xx, 429 with
//! Retry-After, timeouts — and an endpoint outage. It checks what the README
//! guarantees and prints the figures:
//! - lost: accepted events that never finished (succeeded or dead);
//! - duplicate successes without an `interrupted` entry before them;
//! - order violations: an event of a key started before the one before it
//!   finished;
//! - calls missing from the execution log;
//! - retries earlier than their schedule.
//!
//! `make soak` runs it (`SOAK_EVENTS`, default 10,000; a short run:
//! `make soak SOAK_EVENTS=240 SOAK_PACE_MS=150`). It is not part of `make
//! test` yet: on a loaded machine it has seen two events of one key start
//! out of order (see the README), which is not explained yet, and a check
//! that fails now and then would block every change.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hooks_core::records::{EventStatus, LogQuery};
use hooks_core::store::events::EventStore;
use hooks_core::store::logs::LogStore;
use hooks_tests::Stack;
use serde_json::{Value, json};

/// One call the endpoint received, and what it answered.
#[derive(Debug, Clone)]
struct Seen {
    event_id: String,
    handler: u32,
    attempt: u32,
    key: String,
    seq: u64,
    arrived: Instant,
    /// When dispatch was done with the call: the answer, or its timeout for
    /// a call answered too late (the endpoint may still be working on it
    /// then; dispatch has moved on, as a timeout means).
    answered: Instant,
    /// 2xx answered in time.
    success: bool,
    /// The least delay before the next attempt that the schedule allows.
    min_retry: Option<Duration>,
}

#[derive(Default)]
struct Endpoint {
    seen: Vec<Seen>,
    /// Answer 503 to everything until then.
    outage_until: Option<Instant>,
    /// The event whose first call is held 1.5 s, while dispatch is killed.
    stall: Option<String>,
    /// Set when that call arrives.
    stalled: bool,
}

/// Handler timeout in the config, and the retry schedule (every delay 1 s,
/// ±10 % jitter).
const TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_secs(1);
const ATTEMPTS: usize = 8;

/// A fault for (event, handler, attempt), the same on every run: 12 % 5xx,
/// 6 % 429 with Retry-After: 2, 4 % too slow (a timeout); never on the last
/// attempt, so that every event can finish.
fn fault(event_id: &str, handler: u32, attempt: u32) -> Option<u32> {
    if attempt as usize >= ATTEMPTS {
        return None;
    }
    let mut h: u64 = 1469598103934665603;
    for b in event_id.bytes().chain([handler as u8, attempt as u8]) {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    match h % 100 {
        0..=11 => Some(503),
        12..=17 => Some(429),
        18..=21 => Some(0), // too slow
        _ => None,
    }
}

async fn answer(
    state: Arc<Mutex<Endpoint>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event_id = req["id"].as_str().unwrap_or("").to_owned();
    let handler: u32 = uri.path().trim_start_matches("/h").parse().unwrap_or(0);
    let attempt = req["attempt"].as_u64().unwrap_or(0) as u32;
    let outage = state
        .lock()
        .unwrap()
        .outage_until
        .is_some_and(|t| arrived < t);
    let stall = {
        let mut s = state.lock().unwrap();
        let hit = s.stall.as_deref() == Some(event_id.as_str()) && attempt == 1 && handler == 1;
        if hit {
            s.stalled = true;
        }
        hit
    };
    let injected = if outage {
        Some(503)
    } else if stall {
        None
    } else {
        fault(&event_id, handler, attempt)
    };
    let delay = if injected == Some(0) {
        TIMEOUT + Duration::from_secs(1)
    } else if stall {
        // Answered 200 to a dispatch that is killed meanwhile.
        Duration::from_millis(1_500)
    } else {
        Duration::ZERO
    };
    // Checked after answers dispatch sees at once (503, 429); after a
    // timeout, when dispatch gave up is not visible here.
    let min_retry = match injected {
        Some(429) => Some(Duration::from_secs(2)),
        Some(503) => Some(RETRY.mul_f64(0.9)),
        _ => None,
    };
    state.lock().unwrap().seen.push(Seen {
        event_id: event_id.clone(),
        handler,
        attempt,
        key: req["data"]["key"].as_str().unwrap_or("").to_owned(),
        seq: req["data"]["seq"].as_u64().unwrap_or(0),
        arrived,
        answered: arrived + delay.min(TIMEOUT),
        success: injected.is_none(),
        min_retry,
    });
    let _ = headers;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match injected {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(429) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response(),
        Some(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn endpoint() -> (SocketAddr, Arc<Mutex<Endpoint>>) {
    let state: Arc<Mutex<Endpoint>> = Arc::default();
    let shared = state.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let state = shared.clone();
        async move { answer(state, uri, headers, body).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

/// Kills the running dispatch instances of this stack (found by the table
/// name only it uses); how many.
fn kill_dispatch(marker: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if exe.ends_with("target/debug/dispatch")
            && String::from_utf8_lossy(&environ).contains(marker)
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            n += 1;
        }
    }
    n
}

/// What the soak found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Findings {
    lost: Vec<String>,
    unexplained_duplicates: Vec<String>,
    order_violations: Vec<String>,
    unlogged_calls: Vec<String>,
    early_retries: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by make soak"]
async fn soak_under_injected_faults_loses_nothing_and_keeps_every_guarantee() {
    let events: usize = std::env::var("HOOKS_SOAK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let keys = (events / 8).max(1);
    // Billing's pace: a batch of 8 every `pace` (the emulator, one Python
    // process, slows down under a backlog; a long run is paced below what
    // it sustains).
    let pace = Duration::from_millis(
        std::env::var("HOOKS_SOAK_PACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150),
    );
    let (addr, state) = endpoint().await;
    let schedule = ["\"1s\""; ATTEMPTS - 1].join(", ");
    let toml = format!(
        "version = 1\n[defaults]\nretry = {{ schedule = [{schedule}] }}\n\
         [[handler]]\nid = 1\nname = \"softswitch\"\nevent = \"clients.update\"\npriority = 1\nhttp = {{ url = \"http://{addr}/h1\", timeout = \"2s\" }}\n\
         [[handler]]\nid = 2\nname = \"crm\"\nevent = \"clients.update\"\npriority = 2\nhttp = {{ url = \"http://{addr}/h2\", timeout = \"2s\" }}\n"
    );
    let stack = Stack::start(&toml).await;
    // The long run also kills dispatch in the middle of a call (its batch
    // comes back after the queue's 6-minute visibility timeout).
    let kill = std::env::var("HOOKS_SOAK_KILL").is_ok_and(|v| v == "1");
    if kill {
        state.lock().unwrap().stall = Some(format!("soak-{}", events / 2));
    }
    let mut killed = 0;
    let marker = format!("HOOKS_EVENTS_TABLE={}", stack.names.events_table);
    let started = Instant::now();
    // Billing sends batches of 8 events of 8 keys, paced; the endpoint is
    // down for 3 s a third of the way through.
    let mut accepted: Vec<String> = Vec::new();
    let mut next_seq: HashMap<usize, u64> = HashMap::new();
    for (batch_no, chunk) in (0..events).collect::<Vec<_>>().chunks(8).enumerate() {
        if batch_no == events / 8 / 3 {
            state.lock().unwrap().outage_until = Some(Instant::now() + Duration::from_secs(3));
        }
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let k = i % keys;
                let seq = next_seq.entry(k).or_default();
                *seq += 1;
                json!({"id": format!("soak-{i}"), "event": "clients.update", "key": format!("client:{k}"),
                       "data": {"client_id": k, "key": format!("client:{k}"), "seq": *seq}})
            })
            .collect();
        let (status, body) = stack.post("/events", &Value::Array(batch)).await;
        assert_eq!(status, 202, "{body}");
        for e in body["events"].as_array().unwrap() {
            assert_eq!(e["status"], "queued", "{body}");
            accepted.push(e["id"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(pace).await;
        if kill && killed == 0 && state.lock().unwrap().stalled {
            killed = kill_dispatch(&marker);
        }
    }
    let sent_in = started.elapsed();

    // Wait until every event is finished, or give up after a bound.
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let records = EventStore::new(ddb.clone(), &stack.names.events_table, stack.emu.endpoint());
    let logs = LogStore::new(ddb, &stack.names.logs_table, stack.emu.endpoint());
    let limit = Duration::from_secs(120 + events as u64 / 4);
    let mut pending: Vec<String> = accepted.clone();
    let waited = Instant::now();
    let mut finished: BTreeMap<String, EventStatus> = BTreeMap::new();
    while !pending.is_empty() && waited.elapsed() < limit {
        let mut still = Vec::new();
        for id in pending {
            match records.get(&id).await.unwrap() {
                Some(r) if r.status.is_final() => {
                    finished.insert(id, r.status);
                }
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let total = started.elapsed();
    // Let the last log writes land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let seen = state.lock().unwrap().seen.clone();
    let mut f = Findings {
        lost: pending,
        ..Findings::default()
    };
    // Every call logged; duplicates explained.
    let mut by_call: BTreeMap<(String, u32), Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        by_call
            .entry((s.event_id.clone(), s.handler))
            .or_default()
            .push(s);
    }
    let mut logged_calls = 0;
    for id in &accepted {
        let entries = logs
            .query(&LogQuery {
                event_id: Some(id.clone()),
                limit: 1000,
                ..LogQuery::default()
            })
            .await
            .unwrap();
        logged_calls += entries.len();
        for handler in [1, 2] {
            let calls = by_call
                .get(&(id.clone(), handler))
                .cloned()
                .unwrap_or_default();
            for c in &calls {
                if !entries
                    .iter()
                    .any(|e| e.record.handler_id == handler && e.record.attempt == c.attempt)
                {
                    f.unlogged_calls
                        .push(format!("{id} h{handler} attempt {}", c.attempt));
                }
            }
            let successes = calls.iter().filter(|c| c.success).count();
            let interrupted = entries.iter().any(|e| {
                e.record.handler_id == handler
                    && e.record.outcome == hooks_core::chain::Outcome::Interrupted
            });
            if successes > 1 && !interrupted {
                f.unexplained_duplicates
                    .push(format!("{id} h{handler}: {successes} successes"));
            }
            // Retries never before their time.
            let mut sorted = calls.clone();
            sorted.sort_by_key(|c| c.attempt);
            for w in sorted.windows(2) {
                if let Some(min) = w[0].min_retry {
                    let gap = w[1].arrived.saturating_duration_since(w[0].answered);
                    if gap + Duration::from_millis(20) < min {
                        f.early_retries.push(format!(
                            "{id} h{handler} attempt {} after {gap:?} (at least {min:?})",
                            w[1].attempt
                        ));
                    }
                }
            }
        }
    }
    // Per key: an event starts only after the one before it finished, that
    // is after the success of its last call. (A failed or late call ends
    // when dispatch gives up on it, which the endpoint cannot see exactly:
    // the request may reach it late on a loaded machine.)
    let mut by_key: BTreeMap<&str, BTreeMap<u64, (Instant, Instant)>> = BTreeMap::new();
    for s in &seen {
        let span = by_key
            .entry(s.key.as_str())
            .or_default()
            .entry(s.seq)
            .or_insert((s.arrived, s.arrived));
        span.0 = span.0.min(s.arrived);
        if s.success {
            span.1 = span.1.max(s.answered);
        }
    }
    for (key, spans) in &by_key {
        let spans: Vec<(&u64, &(Instant, Instant))> = spans.iter().collect();
        for w in spans.windows(2) {
            let ((a, (_, a_end)), (b, (b_start, _))) = (w[0], w[1]);
            if b_start < a_end {
                f.order_violations.push(format!(
                    "{key}: event {b} started before event {a} finished"
                ));
            }
        }
    }
    let dead = finished
        .values()
        .filter(|s| **s == EventStatus::Dead)
        .count();
    if kill {
        println!("soak: killed {killed} dispatch instances in the middle of a call");
        assert!(killed > 0, "the dispatch instance to kill was not found");
    }
    println!(
        "soak: {events} events over {keys} keys, {} calls ({} failed or slow by design, {} logged), sent in {:.0} s, all finished in {:.0} s; {dead} dead",
        seen.len(),
        seen.iter().filter(|s| !s.success).count(),
        logged_calls,
        sent_in.as_secs_f64(),
        total.as_secs_f64(),
    );
    println!(
        "soak: lost {}, unexplained duplicate successes {}, order violations {}, unlogged calls {}, early retries {}",
        f.lost.len(),
        f.unexplained_duplicates.len(),
        f.order_violations.len(),
        f.unlogged_calls.len(),
        f.early_retries.len()
    );
    assert_eq!(
        dead, 0,
        "every fault stops before the last attempt, so nothing is dead"
    );
    if f != Findings::default() {
        println!("{}", stack.log());
    }
    assert_eq!(f, Findings::default());
}
