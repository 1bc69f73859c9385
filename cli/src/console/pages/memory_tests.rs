//! The pages over in-memory reads: what each shows of the live config, the
//! records, the execution log and the queue, and the error page when a read
//! fails, without AWS.

use std::sync::Arc;

use axum::body::to_bytes;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use hooks_core::chain::{CallRecord, Outcome};
use hooks_core::config::{Config, ParseOptions, Phase};
use hooks_core::events::Event;
use hooks_core::pause::HandlerHealth;
use hooks_core::protocol::EventEnvelope;
use hooks_core::queue::QueueCounts;
use hooks_core::records::{EventRecord, LogEntry, QueuedEvent};
use hooks_core::store::ConfigStore;
use hooks_core::store::memory::{MemoryConfigStore, MemoryEvents, MemoryQueue};
use hooks_core::sync::{Source, apply, plan_against};

use super::common::{Console, Reads};

struct Memory;

impl Reads for Memory {
    type Config = MemoryConfigStore;
    type Events = MemoryEvents;
    type Listings = MemoryEvents;
    type Queue = MemoryQueue;
}

const HANDLERS: &str = r#"version = 1

[[handler]]
id = 1
name = "softswitch"
event = "clients.*"
priority = 10
http = { url = "https://softswitch.example/hooks" }

[[handler]]
id = 2
name = "crm"
event = "clients.*"
priority = 20
http = { url = "https://crm.example/hooks" }
"#;

/// A console over `HANDLERS`, live, with `records` (their calls are the
/// execution log).
async fn console(records: Vec<EventRecord>) -> Arc<Console<Memory>> {
    console_of(HANDLERS, None, records).await
}

/// A console over `text` (read with the bundle folder `dir`), live.
async fn console_of(
    text: &str,
    dir: Option<&std::path::Path>,
    records: Vec<EventRecord>,
) -> Arc<Console<Memory>> {
    let config = MemoryConfigStore::new();
    let parsed = Config::parse("handlers.toml", text, &ParseOptions { scripts_dir: dir }).unwrap();
    let source = Source {
        file: "handlers.toml".into(),
        text: text.into(),
        git_commit: None,
        synced_by: "test".into(),
    };
    let prepared = plan_against(&config, parsed, source).await.unwrap();
    apply(&config, &prepared).await.unwrap();
    let events = MemoryEvents::default();
    let logs = MemoryEvents::default();
    for r in records {
        events.put(r.clone());
        logs.put(r);
    }
    Arc::new(Console::over(config, events, logs, MemoryQueue::default()))
}

/// An event of `key` with one call per `(handler, outcome)`, `minutes` ago.
fn record(id: &str, key: &str, minutes: i64, calls: &[(u32, Outcome)]) -> EventRecord {
    let at = Utc::now() - Duration::minutes(minutes);
    let queued = QueuedEvent {
        event: EventEnvelope {
            id: id.into(),
            event: Event::ClientsUpdate,
            occurred_at: at,
            data: serde_json::Map::new(),
            trace: None,
        },
        key: key.into(),
        received_at: at,
    };
    let mut r = EventRecord::accepted(&queued, at);
    for (handler, outcome) in calls {
        let mut call = CallRecord::without_call(
            id,
            Event::ClientsUpdate,
            Phase::After,
            *handler,
            if *handler == 1 { "softswitch" } else { "crm" },
            *outcome,
            (*outcome == Outcome::Failed).then(|| "connection refused".into()),
        );
        call.started_at = at;
        call.status_code = (*outcome != Outcome::Failed).then_some(200);
        r.calls.push(LogEntry {
            record: call,
            revision: 1,
        });
    }
    if calls.iter().any(|(_, o)| *o == Outcome::Failed) {
        r.fail_until(Some(at + Duration::minutes(5)), "receipt", at);
    } else {
        r.succeed(at);
    }
    r
}

fn query<T: serde::de::DeserializeOwned>(path_and_query: &str) -> Query<T> {
    Query::try_from_uri(&path_and_query.parse::<Uri>().unwrap()).unwrap()
}

/// The sum of the chart bars' counts titled `<hour> <label><count>`.
fn bar_total(html: &str, label: &str) -> u64 {
    html.split(label)
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap()
        })
        .sum()
}

async fn page(answer: impl IntoResponse) -> (u16, String) {
    let r: Response = answer.into_response();
    let status = r.status().as_u16();
    let body = to_bytes(r.into_body(), 1 << 22).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_handlers_page_shows_each_handler_with_its_failures_and_its_pause() {
    let c = console(vec![
        record(
            "e1",
            "client:1",
            30,
            &[(1, Outcome::Processed), (2, Outcome::Failed)],
        ),
        record(
            "e2",
            "client:2",
            20,
            &[(1, Outcome::Processed), (2, Outcome::Failed)],
        ),
    ])
    .await;
    let paused = HandlerHealth::new(2).pause_by("oncall", "crm is down", Utc::now());
    assert!(c.config.put_health(&paused, None).await.unwrap());
    let (status, html) = page(super::handlers(State(c), query("/handlers")).await).await;
    assert_eq!(status, 200, "{html}");
    // crm: 2 calls, both failed; the chart counts them.
    assert!(
        html.contains(r#"<td class="num">2</td><td class="num">100.0 %</td>"#),
        "{html}"
    );
    // The two failures sit in one hour's bar or in two (30 and 20 minutes
    // ago can straddle an hour): their bars add up to 2.
    assert_eq!(bar_total(&html, "failed: "), 2, "{html}");
    assert_eq!(bar_total(&html, "processed: "), 2, "{html}");
    for expected in ["softswitch", "crm", "crm is down", "oncall"] {
        assert!(
            html.contains(expected),
            "{expected} not on the page: {html}"
        );
    }
    // The filter keeps one handler.
    let c = console(Vec::new()).await;
    let (status, html) =
        page(super::handlers(State(c), query("/handlers?phase=before")).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("softswitch"), "{html}");
}

#[tokio::test]
async fn an_event_page_lists_its_calls_and_an_unknown_event_is_404() {
    let c = console(vec![record(
        "evt-42",
        "client:7",
        10,
        &[(1, Outcome::Processed), (2, Outcome::Failed)],
    )])
    .await;
    let (status, html) = page(super::event(State(c.clone()), Path("evt-42".into())).await).await;
    assert_eq!(status, 200, "{html}");
    for expected in [
        "evt-42",
        "client:7",
        "softswitch",
        "crm",
        "connection refused",
    ] {
        assert!(
            html.contains(expected),
            "{expected} not on the page: {html}"
        );
    }
    let (status, html) = page(super::event(State(c), Path("evt-nope".into())).await).await;
    assert_eq!(status, 404, "{html}");
    assert!(html.contains("evt-nope"), "{html}");
}

#[tokio::test]
async fn the_log_page_lists_only_the_calls_its_filters_ask_for() {
    let c = console(vec![
        record("e-ok", "client:1", 30, &[(1, Outcome::Processed)]),
        record("e-bad", "client:2", 20, &[(2, Outcome::Failed)]),
    ])
    .await;
    let (status, html) = page(super::logs(State(c.clone()), query("/logs?handler=2")).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("e-bad"), "{html}");
    assert!(!html.contains("e-ok"), "{html}");
    let (_, html) = page(super::logs(State(c), query("/logs")).await).await;
    assert!(html.contains("e-bad") && html.contains("e-ok"), "{html}");
}

#[tokio::test]
async fn the_events_page_filters_by_status_and_pages_with_its_cursor() {
    let c = console(vec![
        record("e-old", "client:1", 30, &[(1, Outcome::Processed)]),
        record("e-new", "client:1", 10, &[(1, Outcome::Processed)]),
        record("e-waiting", "client:2", 20, &[(2, Outcome::Failed)]),
    ])
    .await;
    let (status, html) =
        page(super::events(State(c.clone()), query("/events?status=waiting")).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("e-waiting"), "{html}");
    assert!(!html.contains("e-old") && !html.contains("e-new"), "{html}");
    // After e-new's entry: the older two.
    let rows = {
        use hooks_core::store::Listings;
        c.logs
            .events(&hooks_core::records::EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["e-new", "e-waiting", "e-old"]);
    let after = format!(
        "/events?after={}|{}",
        urlencode(&rows[0].at),
        urlencode(&rows[0].id)
    );
    let (_, html) = page(super::events(State(c), query(&after)).await).await;
    assert!(
        html.contains("e-old") && html.contains("e-waiting"),
        "{html}"
    );
    assert!(!html.contains("/events/e-new"), "{html}");
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn the_queue_page_shows_the_counts_and_the_oldest_waiting_event() {
    let c = console(vec![record("e-w", "client:2", 90, &[(2, Outcome::Failed)])]).await;
    c.queue.set_counts([
        QueueCounts {
            visible: 17,
            in_flight: 3,
            delayed: 0,
        },
        QueueCounts {
            visible: 5,
            in_flight: 0,
            delayed: 0,
        },
    ]);
    let (status, html) = page(super::queue(State(c), query("/queue")).await).await;
    assert_eq!(status, 200, "{html}");
    for expected in ["17", "e-w"] {
        assert!(
            html.contains(expected),
            "{expected} not on the page: {html}"
        );
    }
}

#[tokio::test]
async fn a_read_that_fails_is_the_error_page_not_an_empty_list() {
    let c = console(vec![record(
        "e1",
        "client:1",
        5,
        &[(1, Outcome::Processed)],
    )])
    .await;
    c.logs.set_failing(true);
    let (status, html) = page(super::events(State(c.clone()), query("/events")).await).await;
    assert_eq!(status, 502, "{html}");
    assert!(html.contains("AWS could not be read"), "{html}");
    assert!(html.contains("set to fail"), "{html}");
    let (status, _) = page(super::logs(State(c), query("/logs")).await).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn the_schemas_page_shows_each_types_schema_and_an_example() {
    let c = console(Vec::new()).await;
    let (status, html) = page(super::schemas(State(c)).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("has no <code>[schemas]</code>"), "{html}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/clients.update.json"),
        r#"{"type": "object", "required": ["client_id"], "properties": {"client_id": {"type": "integer", "examples": [4242]}}}"#,
    )
    .unwrap();
    let text = HANDLERS.replacen(
        "version = 1\n",
        "version = 1\n[schemas]\ndir = \"schemas\"\nstrict = true\n",
        1,
    );
    let c = console_of(&text, Some(dir.path()), Vec::new()).await;
    let (status, html) = page(super::schemas(State(c)).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("strict = true"), "{html}");
    let row = html
        .split("id=\"schema-clients.update\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains("&#34;required&#34;"), "{row}");
    assert!(row.contains("4242"), "the example: {row}");
    let other = html
        .split("id=\"schema-clients.create\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(other.contains("no schema"), "{other}");
}
