//! The chain's semantics against an in-memory invoker; the same behaviour
//! against real HTTP endpoints and scripts is tested in `tests/it`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::config::{Config, ParseOptions};
use crate::targets::{CallError, FailureKind};

/// Answers each handler from a script of replies; remembers every request.
#[derive(Default)]
struct Scripted {
    replies: Mutex<HashMap<HandlerId, Vec<Reply>>>,
    calls: Mutex<Vec<(HandlerId, Value)>>,
    delay: Option<Duration>,
}

impl Scripted {
    fn answer(self, id: HandlerId, reply: Reply) -> Self {
        self.replies
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(reply);
        self
    }
    fn called(&self) -> Vec<HandlerId> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }
    fn request(&self, n: usize) -> Value {
        self.calls.lock().unwrap()[n].1.clone()
    }
}

impl Invoker for Scripted {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        let id = call.handler.id;
        self.calls
            .lock()
            .unwrap()
            .push((id, serde_json::from_slice(&call.body).unwrap()));
        if let Some(d) = self.delay {
            tokio::time::sleep(d.min(call.timeout)).await;
            if d > call.timeout {
                return Reply::failed(CallError::new(FailureKind::Timeout, "no answer"));
            }
        }
        let mut replies = self.replies.lock().unwrap();
        match replies.get_mut(&id) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => Reply::ok(Some(204), ""),
        }
    }
}

fn config(handlers: &str) -> Config {
    let src = format!("version = 1\n{handlers}");
    Config::parse("t.toml", &src, &ParseOptions::default()).unwrap()
}

fn handler(id: u32, phase: &str, extra: &str) -> String {
    format!(
        "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"clients.create\"\nphase = \"{phase}\"\npriority = 1\n{extra}\nhttp = {{ url = \"https://h{id}.example.com\" }}\n"
    )
}

fn event() -> EventEnvelope {
    EventEnvelope {
        id: "evt-1".into(),
        event: Event::ClientsCreate,
        occurred_at: Utc::now(),
        data: json!({"client_id": 42}).as_object().cloned().unwrap(),
        trace: None,
    }
}

fn start() -> Progress {
    Progress::new(event().data)
}

fn json_reply(v: Value) -> Reply {
    Reply::ok(Some(200), serde_json::to_vec(&v).unwrap())
}

fn failed(status: u16) -> Reply {
    Reply {
        status: Some(status),
        body: Bytes::new(),
        error: Some(CallError::new(
            FailureKind::Status,
            format!("HTTP {status}"),
        )),
        declared_json: false,
    }
}

#[tokio::test]
async fn before_chain_passes_modified_data_on_and_returns_it() {
    let c = config(&(handler(1, "before", "") + &handler(2, "before", "")));
    let inv = Scripted::default().answer(
        1,
        json_reply(json!({"data": {"client_id": 42, "risk": "low"}})),
    );
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &event(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(
        Value::Object(d.data),
        json!({"client_id": 42, "risk": "low"})
    );
    assert_eq!(
        inv.request(1)["data"],
        json!({"client_id": 42, "risk": "low"})
    );
    let outcomes: Vec<_> = d.handlers.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::Modified, Outcome::Processed]);
}

#[tokio::test]
async fn before_chain_failure_resolves_by_on_error() {
    let c = config(
        &(handler(1, "before", "on_error = \"allow\"")
            + &handler(2, "before", "on_error = \"forbid\"")
            + &handler(3, "before", "")),
    );
    let inv = Scripted::default()
        .answer(1, failed(500))
        .answer(2, failed(503));
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &event(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Forbid);
    assert_eq!(d.forbidden_by, Some(2));
    assert!(
        d.reason.as_deref().unwrap().contains("HTTP 503"),
        "{:?}",
        d.reason
    );
    assert_eq!(
        inv.called(),
        [1, 2],
        "the chain stops at the fail-closed handler"
    );
    assert_eq!(d.handlers[0].resolution, Some(Resolution::Allow));
    assert_eq!(d.handlers[1].resolution, Some(Resolution::Forbid));
}

#[tokio::test(start_paused = true)]
async fn before_chain_deadline_is_shared_by_all_handlers() {
    let c = config(
        &(handler(1, "before", "on_error = \"allow\"")
            + &handler(2, "before", "on_error = \"allow\"")
            + &handler(3, "before", "on_error = \"forbid\"")),
    );
    let inv = Scripted {
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &event(),
        Duration::from_secs(5),
    )
    .await;
    // 1 answers after 3s, 2 gets the 2s left and times out, 3 is not called.
    let outcomes: Vec<_> = d.handlers.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Processed, Outcome::TimedOut, Outcome::Skipped]
    );
    assert_eq!(inv.called(), [1, 2]);
    assert_eq!(d.verdict, Verdict::Forbid);
}

/// Calls every handler and keeps what each came to.
struct Observed(Vec<CallRecord>);

impl Gatekeeper for Observed {
    async fn gate(&mut self, _: &Handler) -> Gate {
        Gate::Call
    }
    async fn observe(&mut self, r: &CallRecord) {
        self.0.push(r.clone());
    }
}

#[tokio::test]
async fn after_chain_blocks_then_resumes_without_recalling_completed_handlers() {
    let c =
        config(&(handler(1, "after", "") + &handler(2, "after", "") + &handler(3, "after", "")));
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default()
        .answer(
            1,
            json_reply(json!({"data": {"client_id": 42, "switch_id": "s-1"}})),
        )
        .answer(
            2,
            Reply {
                error: Some(CallError {
                    kind: FailureKind::Status,
                    message: "HTTP 429".into(),
                    retry_after: Some(Duration::from_secs(7)),
                }),
                status: Some(429),
                body: Bytes::new(),
                declared_json: false,
            },
        );
    let mut saved = Observed(Vec::new());
    let first = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        None,
        &mut saved,
    )
    .await;
    assert_eq!(
        first.outcome,
        AfterOutcome::Blocked {
            handler: 2,
            attempt: 1,
            retryable: true,
            retry_after_secs: Some(7)
        }
    );
    assert_eq!(saved.0, first.handlers, "the gatekeeper hears every call");
    assert!(first.progress.completed.contains(&1));

    let second = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        first.progress,
        None,
        &mut saved,
    )
    .await;
    assert_eq!(second.outcome, AfterOutcome::Completed);
    assert_eq!(inv.called(), [1, 2, 2, 3]);
    assert_eq!(second.handlers[0].attempt, 2);
    assert_eq!(inv.request(2)["attempt"], 2);
    assert_eq!(
        inv.request(3)["data"]["switch_id"],
        "s-1",
        "resumed data is what handler 1 left"
    );
}

#[tokio::test]
async fn after_chain_skips_past_a_skip_handler_and_stops_on_forbid() {
    let c = config(
        &(handler(1, "after", "on_failure = \"skip\"")
            + &handler(2, "after", "")
            + &handler(3, "after", "")),
    );
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default().answer(1, failed(500)).answer(
        2,
        json_reply(json!({"decision": "forbid", "reason": "blocked client"})),
    );
    let run = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        None,
        &mut Unguarded,
    )
    .await;
    assert_eq!(
        run.outcome,
        AfterOutcome::Forbidden {
            handler: 2,
            reason: "blocked client".into()
        }
    );
    assert_eq!(inv.called(), [1, 2]);
    assert_eq!(run.handlers[0].resolution, Some(Resolution::Skip));
    assert!(
        run.progress.completed.contains(&1),
        "a skipped failure is not retried"
    );
}

#[tokio::test]
async fn after_chain_pauses_before_a_handler_that_could_overrun_the_deadline() {
    let c = config(&(handler(1, "after", "") + &handler(2, "after", "")));
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default();
    let deadline = Instant::now() + Duration::from_secs(1); // default timeout is 10s
    let run = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        Some(deadline),
        &mut Unguarded,
    )
    .await;
    // The first call of a run is always made (cut to the time left), so a
    // long-timeout handler cannot stall the event; the second waits for the next run.
    assert_eq!(run.outcome, AfterOutcome::Paused { next: 2 });
    assert_eq!(inv.called(), [1]);
    let run = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        run.progress,
        Some(Instant::now() + Duration::from_secs(1)),
        &mut Unguarded,
    )
    .await;
    assert_eq!(run.outcome, AfterOutcome::Completed);
    assert_eq!(inv.called(), [1, 2]);
}

#[tokio::test]
async fn unusable_answers_are_permanent_failures() {
    let c = config(&handler(1, "after", ""));
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default().answer(1, json_reply(json!({"decision": "perhaps"})));
    let run = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        None,
        &mut Unguarded,
    )
    .await;
    assert!(
        matches!(
            run.outcome,
            AfterOutcome::Blocked {
                retryable: false,
                ..
            }
        ),
        "{:?}",
        run.outcome
    );
    assert!(
        run.handlers[0]
            .error
            .as_deref()
            .unwrap()
            .contains("decision")
    );
}

#[tokio::test]
async fn a_long_error_is_cut_before_it_reaches_the_record() {
    // A redirect whose Location is 300 KB: the message must not go whole
    // into the event's record and the execution log.
    let c = config(&handler(1, "after", ""));
    let location = format!("https://example.com/{}", "x".repeat(300_000));
    let inv = Scripted::default().answer(
        1,
        Reply {
            status: Some(302),
            body: Bytes::new(),
            error: Some(CallError::new(
                FailureKind::Redirect,
                format!("redirect to {location} (redirects are not followed)"),
            )),
            declared_json: false,
        },
    );
    let run = run_after(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::After),
        &c.defaults,
        &event(),
        start(),
        None,
        &mut Observed(Vec::new()),
    )
    .await;
    let error = run.handlers[0].error.as_deref().unwrap();
    assert!(error.len() <= crate::chain::ERROR_BYTES + '…'.len_utf8());
    assert!(error.starts_with("redirect to https://example.com/xxx"));
    assert!(error.ends_with('…'));
}

#[tokio::test]
async fn a_shadow_before_handler_is_called_and_logged_but_never_decides() {
    let c = config(
        &(handler(1, "before", "status = \"shadow\"")
            + &handler(2, "before", "status = \"shadow\"")
            + &handler(3, "before", "status = \"shadow\"\non_error = \"forbid\"")
            + &handler(4, "before", "")),
    );
    let chain = c.chain_for(Event::ClientsCreate, Phase::Before);
    let inv = Scripted::default()
        .answer(
            1,
            json_reply(json!({"data": {"client_id": 42, "risk": "high"}})),
        )
        .answer(
            2,
            json_reply(json!({"decision": "forbid", "reason": "trial says no"})),
        )
        .answer(3, failed(500));
    let d = run_before(&inv, &chain, &c.defaults, &event(), Duration::from_secs(5)).await;
    assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
    assert_eq!(d.forbidden_by, None);
    assert_eq!(
        inv.called(),
        [1, 2, 3, 4],
        "called at their place in the chain"
    );
    assert_eq!(Value::Object(d.data), json!({"client_id": 42}));
    assert_eq!(
        inv.request(3)["data"],
        json!({"client_id": 42}),
        "not modified for the next"
    );
    let labels: Vec<String> = d.handlers.iter().map(CallRecord::outcome_label).collect();
    assert_eq!(
        labels,
        [
            "would have modified",
            "would have forbidden",
            "failed (shadow)",
            "processed"
        ]
    );
    assert_eq!(
        d.handlers[0].changes[0].path, "risk",
        "what it would have changed"
    );
    assert!(
        d.handlers[..3]
            .iter()
            .all(|r| r.shadow && r.resolution.is_none())
    );
}

#[tokio::test]
async fn a_shadow_after_handler_never_blocks_retries_or_stops_the_chain() {
    let c = config(
        &(handler(1, "after", "status = \"shadow\"")
            + &handler(2, "after", "status = \"shadow\"")
            + &handler(3, "after", "")),
    );
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default()
        .answer(1, failed(503))
        .answer(2, json_reply(json!({"decision": "forbid", "reason": "no"})));
    let run = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        None,
        &mut Unguarded,
    )
    .await;
    assert_eq!(run.outcome, AfterOutcome::Completed);
    assert_eq!(inv.called(), [1, 2, 3]);
    assert!(
        run.progress.completed.contains(&1),
        "a failed shadow call is never retried"
    );
    assert_eq!(run.handlers[0].outcome_label(), "failed (shadow)");
    assert_eq!(run.handlers[1].outcome_label(), "would have forbidden");
    // Disabled and archived handlers are still not called.
    let c = config(
        &(handler(1, "after", "status = \"disabled\"")
            + &handler(2, "after", "status = \"archived\"")),
    );
    assert!(c.chain_for(Event::ClientsCreate, Phase::After).is_empty());
}

#[tokio::test]
async fn conditions_see_the_data_as_the_handlers_before_left_it() {
    // 1 adds `risk`; 2 runs only when it is high; 3 only when it is low;
    // 4's condition names a field that is not there. All have priority 1,
    // so they run by id.
    let c = config(
        &(handler(1, "before", "")
            + &handler(2, "before", r#"when = 'data.risk == "high"'"#)
            + &handler(
                3,
                "before",
                r#"when = 'data.risk == "low" && data.client_id > 40'"#,
            )
            + &handler(4, "before", "when = 'data.nothing > 1'")),
    );
    let inv = Scripted::default().answer(
        1,
        json_reply(json!({"data": {"client_id": 42, "risk": "low"}})),
    );
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &event(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(inv.called(), [1, 3]);
    let outcomes: Vec<_> = d
        .handlers
        .iter()
        .map(|r| (r.handler_id, r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Outcome::Modified),
            (2, Outcome::ConditionFalse),
            (3, Outcome::Processed),
            (4, Outcome::ConditionFalse)
        ]
    );
    assert_eq!(
        d.handlers[1].error, None,
        "a false condition is not an error"
    );
    let err = d.handlers[3].error.as_deref().unwrap_or("");
    assert!(
        err.contains("could not be evaluated") && err.contains("nothing"),
        "{err}"
    );
    assert!(
        d.handlers[3].resolution.is_none(),
        "not a failure: nothing to resolve"
    );
}

#[tokio::test]
async fn an_after_handler_whose_condition_is_false_is_done_and_never_retried() {
    let c =
        config(&(handler(1, "after", "when = 'data.client_id < 0'") + &handler(2, "after", "")));
    let chain = c.chain_for(Event::ClientsCreate, Phase::After);
    let inv = Scripted::default().answer(2, failed(503));
    let first = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        start(),
        None,
        &mut Unguarded,
    )
    .await;
    assert!(matches!(
        first.outcome,
        AfterOutcome::Blocked { handler: 2, .. }
    ));
    assert!(first.progress.completed.contains(&1));
    assert_eq!(first.progress.attempts.get(&1), None, "no attempt is used");
    let second = run_after(
        &inv,
        &chain,
        &c.defaults,
        &event(),
        first.progress,
        None,
        &mut Unguarded,
    )
    .await;
    assert_eq!(second.outcome, AfterOutcome::Completed);
    assert_eq!(inv.called(), [2, 2], "handler 1 is never called");
    assert_eq!(second.handlers.len(), 1);
}

/// A condition whose evaluation would go past its budget over the event's
/// data (a 480-element list built per element) is not evaluated: the
/// handler fails, not called, resolved by `on_error` (fail closed) or
/// `on_failure` (block: permanent, so the event does not wait on retries).
#[tokio::test]
async fn a_condition_over_its_budget_fails_the_handler_by_its_own_rules() {
    let amplify = format!(
        "when = 'size(data.items.map(i, [{}])) > 0'",
        vec!["i"; 480].join(",")
    );
    let mut ev = event();
    ev.data.insert(
        "items".into(),
        Value::Array((0..5_000).map(|n| json!(n)).collect()),
    );

    let c = config(&(handler(1, "before", &format!("on_error = \"forbid\"\n{amplify}"))));
    let inv = Scripted::default();
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &ev,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Forbid, "fails closed: {d:?}");
    let r = &d.handlers[0];
    assert_eq!(
        (r.outcome, r.not_called, r.retryable),
        (Outcome::Failed, true, Some(false))
    );
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("steps over this data")),
        "{r:?}"
    );
    assert!(inv.called().is_empty(), "the handler is not called");

    let c = config(&(handler(1, "after", &amplify) + &handler(2, "after", "")));
    let run = run_after(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::After),
        &c.defaults,
        &ev,
        Progress::new(ev.data.clone()),
        None,
        &mut Unguarded,
    )
    .await;
    assert_eq!(
        run.outcome,
        AfterOutcome::Blocked {
            handler: 1,
            attempt: 1,
            retryable: false,
            retry_after_secs: None
        }
    );
    assert!(inv.called().is_empty());

    // The same condition over small data runs, and is true.
    let c = config(&(handler(1, "before", &amplify)));
    let d = run_before(
        &inv,
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &{
            let mut small = event();
            small.data.insert("items".into(), json!([1, 2, 3]));
            small
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(inv.called(), [1]);
}
