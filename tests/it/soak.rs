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
//! `make test` runs a short soak (240 events, about a minute); `make soak`
//! a long one (`SOAK_EVENTS`, default 10,000, paced by `SOAK_PACE_MS`) that
//! also kills a dispatch instance in the middle of a call. A finding prints
//! both events' calls, as dispatch logged them and as the endpoint saw them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hooks_core::chain::{CallRecord, Outcome};
use hooks_core::records::{EventStatus, LogEntry};
use hooks_tests::Stack;
use serde_json::{Value, json};

/// One call the endpoint received, and what it answered.
#[derive(Debug, Clone)]
struct Seen {
    event_id: String,
    handler: u32,
    attempt: u32,
    arrived: Instant,
    /// Answered 2xx (dispatch may have given up on it already: a request
    /// can reach the endpoint late on a loaded machine).
    success: bool,
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
    state.lock().unwrap().seen.push(Seen {
        event_id: event_id.clone(),
        handler,
        attempt,
        arrived,
        success: injected.is_none(),
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

/// One event's run, as dispatch logged it and as the endpoint saw it.
#[derive(Debug, Default)]
struct Span {
    id: String,
    first_start: Option<DateTime<Utc>>,
    last_end: Option<DateTime<Utc>>,
    first_arrival: Option<Instant>,
    last_success_arrival: Option<Instant>,
}

/// When dispatch was done with a call.
fn end_of(c: &CallRecord) -> DateTime<Utc> {
    c.started_at + chrono::Duration::milliseconds(c.duration_ms as i64)
}

/// Every item of a table, page by page.
async fn scan(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    projection: Option<&str>,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let mut req = ddb.scan().table_name(table);
    if let Some(p) = projection {
        req = req
            .projection_expression(p)
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#st", "status");
    }
    let mut pages = req.into_paginator().send();
    let mut items = Vec::new();
    while let Some(page) = pages.next().await {
        items.extend(page.expect("scanning a table").items().iter().cloned());
    }
    items
}

/// Each event's status, from one scan of the events table.
async fn statuses(ddb: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, EventStatus> {
    scan(ddb, table, Some("#id, #st"))
        .await
        .into_iter()
        .filter_map(|item| {
            let (Some(AttributeValue::S(id)), Some(AttributeValue::S(st))) =
                (item.get("id"), item.get("status"))
            else {
                return None;
            };
            let st: EventStatus = serde_json::from_value(Value::String(st.clone()))
                .unwrap_or_else(|e| panic!("status of {id}: {e}"));
            Some((id.clone(), st))
        })
        .collect()
}

/// The whole execution log (every record's calls), from one scan of the
/// events table.
async fn log_entries(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<LogEntry> {
    scan(ddb, table, None)
        .await
        .iter()
        .flat_map(|item| {
            hooks_core::store::events::record_from_item(item)
                .expect("a readable record")
                .calls
        })
        .collect()
}

/// An event's calls, as dispatch logged them and as the endpoint saw them,
/// in milliseconds since the run started (to explain a finding).
fn timeline(id: &str, log: &[LogEntry], seen: &[Seen], t0: Instant) -> String {
    let t0_utc = Utc::now() - chrono::Duration::from_std(t0.elapsed()).unwrap_or_default();
    let mut lines: Vec<(i64, String)> = Vec::new();
    for e in log.iter().filter(|e| e.record.event_id == id) {
        let c = &e.record;
        lines.push((
            (c.started_at - t0_utc).num_milliseconds(),
            format!(
                "  {id} dispatch: h{} attempt {} {:?} ({} ms){}",
                c.handler_id,
                c.attempt,
                c.outcome,
                c.duration_ms,
                c.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        ));
    }
    for s in seen.iter().filter(|s| s.event_id == id) {
        lines.push((
            s.arrived.duration_since(t0).as_millis() as i64,
            format!(
                "  {id} endpoint: h{} attempt {} arrived, answered {}",
                s.handler,
                s.attempt,
                if s.success { "2xx" } else { "a failure" }
            ),
        ));
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(t, l)| format!("{t:>8} ms{l}\n"))
        .collect()
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
    // (event id, key, its place in the key's order)
    let mut sent: Vec<(String, String, u64)> = Vec::new();
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
                sent.push((format!("soak-{i}"), format!("client:{k}"), *seq));
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

    // Wait until every event is finished, or give up after a bound. The
    // events table is read in one scan per round, not a request per event:
    // with 10,000 events, per-event reads kept the emulator busy for longer
    // than the run itself.
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let limit = Duration::from_secs(120 + events as u64 / 4);
    let waited = Instant::now();
    let finished: BTreeMap<String, EventStatus> = loop {
        let finished: BTreeMap<String, EventStatus> = statuses(&ddb, &stack.names.events_table)
            .await
            .into_iter()
            .filter(|(_, s)| s.is_final())
            .collect();
        if accepted.iter().all(|id| finished.contains_key(id)) || waited.elapsed() >= limit {
            break finished;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let total = started.elapsed();
    // Let the last log writes land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let seen = state.lock().unwrap().seen.clone();
    let log = log_entries(&ddb, &stack.names.events_table).await;
    let mut f = Findings {
        lost: accepted
            .iter()
            .filter(|id| !finished.contains_key(*id))
            .cloned()
            .collect(),
        ..Findings::default()
    };
    let mut logged: HashMap<(&str, u32), Vec<&CallRecord>> = HashMap::new();
    for e in &log {
        logged
            .entry((e.record.event_id.as_str(), e.record.handler_id))
            .or_default()
            .push(&e.record);
    }
    for calls in logged.values_mut() {
        calls.sort_by_key(|c| (c.attempt, c.started_at));
    }
    let logged_as = |id: &str, handler: u32, attempt: u32| -> Option<Outcome> {
        logged
            .get(&(id, handler))
            .and_then(|calls| calls.iter().find(|c| c.attempt == attempt))
            .map(|c| c.outcome)
    };
    // Every call the endpoint received is in the execution log.
    for s in &seen {
        if logged_as(&s.event_id, s.handler, s.attempt).is_none() {
            f.unlogged_calls.push(format!(
                "{} h{} attempt {}",
                s.event_id, s.handler, s.attempt
            ));
        }
    }
    // A handler is called again after a success only if dispatch did not
    // see that success: a call it logged as interrupted or timed out (the
    // endpoint may have answered 2xx too late), or failed.
    let mut successes: BTreeMap<(&str, u32), usize> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.success) {
        *successes.entry((&s.event_id, s.handler)).or_default() += 1;
    }
    for (&(id, handler), &n) in &successes {
        let calls = logged.get(&(id, handler)).cloned().unwrap_or_default();
        let seen_ok = calls.iter().filter(|c| c.outcome.is_success()).count();
        let explained = calls.iter().any(|c| !c.outcome.is_success());
        if seen_ok > 1 || (n > 1 && !explained) {
            f.unexplained_duplicates.push(format!(
                "{id} h{handler}: {n} successes at the endpoint, {seen_ok} logged"
            ));
        }
    }
    // Retries never before their time, on dispatch's own clock: from the
    // end of a failed call to the start of the next attempt, at least the
    // schedule's delay less its jitter, or the handler's Retry-After.
    for (&(id, handler), calls) in &logged {
        for w in calls.windows(2) {
            let (prev, next) = (w[0], w[1]);
            let min = match prev.outcome {
                Outcome::Failed | Outcome::TimedOut => prev
                    .retry_after_secs
                    .map(Duration::from_secs)
                    .unwrap_or(RETRY.mul_f64(0.9)),
                _ => continue,
            };
            let gap = (next.started_at - end_of(prev))
                .to_std()
                .unwrap_or(Duration::ZERO);
            if gap + Duration::from_millis(2) < min {
                f.early_retries.push(format!(
                    "{id} h{handler} attempt {} after {gap:?} (at least {min:?})",
                    next.attempt
                ));
            }
        }
    }
    // Per key, an event starts only after the one before it finished.
    // Judged twice: on dispatch's clock (the first call of the later event
    // starts after the last call of the earlier one ended), and at the
    // endpoint (the first request of the later event arrives after the
    // last request of the earlier one that dispatch saw succeed — a success
    // dispatch logged reached the endpoint before dispatch went on).
    let key_of: HashMap<&str, (&str, u64)> = sent
        .iter()
        .map(|(id, key, seq)| (id.as_str(), (key.as_str(), *seq)))
        .collect();
    let mut runs: BTreeMap<&str, BTreeMap<u64, Span>> = BTreeMap::new();
    for e in &log {
        let Some(&(key, seq)) = key_of.get(e.record.event_id.as_str()) else {
            continue;
        };
        let span = runs.entry(key).or_default().entry(seq).or_default();
        span.id = e.record.event_id.clone();
        span.first_start = span
            .first_start
            .min(Some(e.record.started_at))
            .or(Some(e.record.started_at));
        span.last_end = span.last_end.max(Some(end_of(&e.record)));
    }
    for s in &seen {
        let Some(&(key, seq)) = key_of.get(s.event_id.as_str()) else {
            continue;
        };
        let span = runs.entry(key).or_default().entry(seq).or_default();
        span.first_arrival = span.first_arrival.min(Some(s.arrived)).or(Some(s.arrived));
        if logged_as(&s.event_id, s.handler, s.attempt).is_some_and(Outcome::is_success) {
            span.last_success_arrival = span.last_success_arrival.max(Some(s.arrived));
        }
    }
    for (key, spans) in &runs {
        let spans: Vec<(&u64, &Span)> = spans.iter().collect();
        for w in spans.windows(2) {
            let ((a, sa), (b, sb)) = (w[0], w[1]);
            let on_dispatch_clock = matches!((sa.last_end, sb.first_start),
                (Some(end), Some(start)) if start + chrono::Duration::milliseconds(1) < end);
            let at_endpoint = matches!((sa.last_success_arrival, sb.first_arrival),
                (Some(done), Some(first)) if first < done);
            if on_dispatch_clock || at_endpoint {
                f.order_violations.push(format!(
                    "{key}: event {b} ({}) started before event {a} ({}) finished \
                     (dispatch's clock: {on_dispatch_clock}, endpoint: {at_endpoint})\n{}{}",
                    sb.id,
                    sa.id,
                    timeline(&sa.id, &log, &seen, started),
                    timeline(&sb.id, &log, &seen, started),
                ));
            }
        }
    }
    let dead = finished
        .values()
        .filter(|s| **s == EventStatus::Dead)
        .count();
    let interrupted = log
        .iter()
        .filter(|e| e.record.outcome == Outcome::Interrupted)
        .count();
    if kill {
        println!(
            "soak: killed {killed} dispatch instances in the middle of a call; {interrupted} calls logged interrupted"
        );
        assert!(killed > 0, "the dispatch instance to kill was not found");
        // The call held while dispatch was killed is among them.
        let stalled = format!("soak-{}", events / 2);
        assert!(
            log.iter().any(|e| e.record.event_id == stalled
                && e.record.handler_id == 1
                && e.record.attempt == 1
                && e.record.outcome == Outcome::Interrupted),
            "the call in flight when dispatch was killed is not logged as interrupted"
        );
    }
    println!(
        "soak: {events} events over {keys} keys, {} calls ({} failed or slow by design, {} logged), sent in {:.0} s, all finished in {:.0} s; {dead} dead",
        seen.len(),
        seen.iter().filter(|s| !s.success).count(),
        log.len(),
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
