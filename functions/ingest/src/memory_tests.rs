//! Ingest's requests against in-memory ports: recording, duplicates,
//! resending, a refused queue entry, decisions and their records, without
//! AWS.

use std::sync::Mutex;
use std::time::Duration;

use hooks_core::config::{Config, ParseOptions};
use hooks_core::ingest::Authenticator;
use hooks_core::metrics::Metrics;
use hooks_core::records::EventStatus;
use hooks_core::store::live::LiveConfig;
use hooks_core::store::memory::{MemoryConfigStore, MemoryEvents, MemoryQueue};
use hooks_core::sync::{Source, apply, plan_against};
use hooks_core::targets::{Call, Invoker, Reply};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use crate::handler::{App, Limits, Ports, handle};

/// Handlers answer with the JSON each is given (200 `{}` otherwise).
#[derive(Debug, Default)]
struct Answers {
    by_id: Vec<(u32, Value)>,
    called: Mutex<Vec<u32>>,
}

impl Invoker for Answers {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        let id = call.handler.id;
        if let Ok(mut c) = self.called.lock() {
            c.push(id);
        }
        let body = self
            .by_id
            .iter()
            .find(|(h, _)| *h == id)
            .map_or_else(|| json!({}), |(_, v)| v.clone());
        Reply::ok(Some(200), serde_json::to_vec(&body).unwrap_or_default())
    }
}

struct Memory;

impl Ports for Memory {
    type Events = MemoryEvents;
    type Queue = MemoryQueue;
    type Config = MemoryConfigStore;
    type Targets = Answers;
}

const TOKEN: &str = "Bearer t0k3n";

async fn app(handlers: &str, answers: Vec<(u32, Value)>) -> App<Memory> {
    app_in(None, handlers, answers).await
}

/// With the bundle folder `dir` (for `[schemas]`).
async fn app_in(
    dir: Option<&std::path::Path>,
    handlers: &str,
    answers: Vec<(u32, Value)>,
) -> App<Memory> {
    app_with(dir, handlers, answers, |_| {}).await
}

/// An app whose live revision is `handlers` as parsed, then `change`d (a
/// revision this version of validate would not have let through).
async fn app_with(
    dir: Option<&std::path::Path>,
    handlers: &str,
    answers: Vec<(u32, Value)>,
    change: impl FnOnce(&mut Config),
) -> App<Memory> {
    let store = MemoryConfigStore::new();
    let text = format!("version = 1\n{handlers}");
    let mut config = Config::parse("t.toml", &text, &ParseOptions { scripts_dir: dir }).unwrap();
    change(&mut config);
    let source = Source {
        file: "t.toml".into(),
        text,
        git_commit: None,
        synced_by: "test".into(),
    };
    let prepared = plan_against(&store, config, source).await.unwrap();
    apply(&store, &prepared).await.unwrap();
    App {
        auth: Authenticator::from_lists("t0k3n", "").unwrap(),
        limits: Limits {
            max_body_bytes: 1 << 20,
        },
        events: MemoryEvents::default(),
        live: LiveConfig::new(store),
        queue: MemoryQueue::default(),
        targets: Answers {
            by_id: answers,
            called: Mutex::default(),
        },
        metrics: Metrics::new("test"),
        schemas: Default::default(),
    }
}

fn handler(id: u32, event: &str, phase: &str) -> String {
    format!(
        "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"{event}\"\nphase = \"{phase}\"\npriority = {id}\nhttp = {{ url = \"https://h{id}.example.com\" }}\n"
    )
}

async fn send(app: &App<Memory>, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let req: Request = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", TOKEN)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = handle(app, req, Duration::from_secs(10)).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

fn event(id: &str, client: u32) -> Value {
    json!({"id": id, "event": "clients.update", "data": {"client_id": client}})
}

#[tokio::test]
async fn an_event_is_recorded_then_queued_and_a_repeat_is_a_duplicate() {
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    let (status, body) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"], json!([{"id": "e-1", "status": "queued"}]));
    assert_eq!(app.queue.sent().len(), 1);
    assert_eq!(app.queue.sent()[0].key, "client:7");
    assert_eq!(
        app.events.get("e-1").map(|r| r.status),
        Some(EventStatus::Accepted)
    );
    // Dispatch ran it: a repeat is a duplicate, and nothing is sent.
    let mut r = app.events.get("e-1").unwrap();
    r.status = EventStatus::Succeeded;
    app.events.put(r);
    let (status, body) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["events"],
        json!([{"id": "e-1", "status": "duplicate"}])
    );
    assert_eq!(app.queue.sent().len(), 1);
}

#[tokio::test]
async fn an_accepted_event_not_yet_run_is_sent_again() {
    // Recorded, but maybe never queued (the first answer was an error):
    // a retry sends it again, the queue deduplicates.
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    send(&app, "POST", "/events", &event("e-1", 7)).await;
    let (status, body) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"], json!([{"id": "e-1", "status": "queued"}]));
    assert_eq!(app.queue.sent().len(), 2);
}

#[tokio::test]
async fn a_refused_entry_fails_the_batch_and_says_which() {
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    app.queue.refuse("e-2");
    let batch = json!([event("e-1", 1), event("e-2", 2)]);
    let (status, body) = send(&app, "POST", "/events", &batch).await;
    assert_eq!(status / 100, 5, "{body}");
    assert_eq!(
        body["events"],
        json!([{"id": "e-1", "status": "queued"}, {"id": "e-2", "status": "failed"}]),
        "{body}"
    );
    // The refused one stays accepted: billing's retry sends it again.
    assert_eq!(
        app.events.get("e-2").map(|r| r.status),
        Some(EventStatus::Accepted)
    );
}

#[tokio::test]
async fn an_unreachable_ledger_queues_nothing() {
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    app.events.set_failing(true);
    let (status, body) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 503, "{body}");
    assert!(app.queue.sent().is_empty());
}

#[tokio::test]
async fn a_decision_runs_the_before_chain_and_is_recorded() {
    let handlers = handler(1, "clients.update", "before") + &handler(2, "clients.update", "before");
    let answers = vec![
        (1, json!({"data": {"client_id": 7, "score": 420}})),
        (2, json!({"decision": "forbid", "reason": "risk"})),
    ];
    let app = app(&handlers, answers).await;
    let (status, body) = send(&app, "POST", "/decisions", &event("d-1", 7)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "forbid");
    assert_eq!(body["reason"], "risk");
    assert_eq!(body["forbidden_by"], 2);
    assert_eq!(body["data"]["score"], 420, "handler 1's change is kept");
    assert_eq!(*app.targets.called.lock().unwrap(), [1, 2]);
    // Nothing queued; the record shows the calls.
    assert!(app.queue.sent().is_empty());
    let r = app.events.get("d-1").unwrap();
    assert!(r.decision);
    assert_eq!(r.calls.len(), 2);
    let (status, body) = send(&app, "GET", "/events/d-1", &json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["calls"].as_array().map(Vec::len), Some(2), "{body}");
}

#[tokio::test]
async fn an_unreadable_record_is_a_clear_error() {
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    send(&app, "POST", "/events", &event("e-1", 7)).await;
    app.events.set_unreadable("e-1");
    let (status, body) = send(&app, "GET", "/events/e-1", &json!(null)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("cannot be read"), "{body}");
}

#[tokio::test]
async fn data_that_does_not_fit_its_schema_is_refused_naming_the_path_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/clients.update.json"),
        json!({
            "type": "object",
            "required": ["client_id"],
            "properties": {"client_id": {"type": "integer", "minimum": 1}},
        })
        .to_string(),
    )
    .unwrap();
    let handlers = format!(
        "[schemas]\ndir = \"schemas\"\n{}",
        handler(1, "clients.update", "after")
    );
    let app = app_in(Some(dir.path()), &handlers, vec![]).await;
    let batch = json!([
        event("fits", 7),
        {"id": "wrong", "event": "clients.update", "data": {"client_id": "seven"}},
        {"id": "no-schema", "event": "accounts.create", "data": {"anything": true}},
    ]);
    let (status, body) = send(&app, "POST", "/events", &batch).await;
    assert_eq!(status, 422, "{body}");
    let details = body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{body}");
    assert_eq!(details[0]["index"], 1);
    assert_eq!(details[0]["field"], "data.client_id");
    let message = details[0]["message"].as_str().unwrap();
    assert!(
        message.contains("integer") && message.contains("/properties/client_id/type"),
        "{message}"
    );
    // Nothing of the batch is recorded or queued.
    assert!(app.events.get("fits").is_none());
    assert!(app.queue.sent().is_empty());
    // The fitting events, and a type without a schema, pass.
    let batch = json!([event("fits", 7), {"id": "no-schema", "event": "accounts.create", "data": {"anything": true}}]);
    let (status, body) = send(&app, "POST", "/events", &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.queue.sent().len(), 2);
    // A decision is checked too.
    let (status, body) = send(
        &app,
        "POST",
        "/decisions",
        &json!({"event": "clients.update", "data": {"client_id": 0}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "data.client_id");
}

#[tokio::test]
async fn schemas_that_do_not_compile_refuse_events_for_a_retry_not_accepted_unchecked() {
    // A recursive schema, synced by a CLI of another version.
    let app = app_with(None, &handler(1, "clients.update", "after"), vec![], |c| {
        c.schemas.dir = "schemas".into();
        c.schemas.by_event.insert(
            hooks_core::events::Event::ClientsUpdate,
            json!({"properties": {"children": {"items": {"$ref": "#"}}}}),
        );
    })
    .await;
    for id in ["e-1", "e-2"] {
        let (status, body) = send(&app, "POST", "/events", &event(id, 7)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("recursive"), "{body}");
    }
    assert!(app.queue.sent().is_empty(), "nothing accepted unchecked");
}

#[tokio::test]
async fn without_the_live_config_events_are_refused_for_a_retry_not_accepted_unchecked() {
    let app = app(&handler(1, "clients.update", "after"), vec![]).await;
    app.live.store().set_failing(true);
    let (status, body) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 503, "{body}");
    assert!(app.queue.sent().is_empty());
    // Once read, the revision is kept: a store outage then stops nothing.
    app.live.store().set_failing(false);
    let (status, _) = send(&app, "POST", "/events", &event("e-1", 7)).await;
    assert_eq!(status, 202);
    app.live.store().set_failing(true);
    let (status, body) = send(&app, "POST", "/events", &event("e-2", 7)).await;
    assert_eq!(status, 202, "{body}");
}
