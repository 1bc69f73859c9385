//! End to end: ingest and dispatch under `cargo lambda watch`, the emulator's
//! DynamoDB and SQS, the poller, and real HTTP handler endpoints.

use std::time::Duration;

use hooks_tests::{Answer, Receiver, Stack, TOKEN};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn handler(id: u32, priority: u32, event: &str, url: &str, extra: &str) -> String {
    format!(
        "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"{event}\"\npriority = {priority}\n{extra}\nhttp = {{ url = \"{url}\", timeout = \"3s\" }}\n"
    )
}

fn config(defaults: &str, handlers: &[String]) -> String {
    format!("version = 1\n{defaults}\n{}", handlers.concat())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_runs_through_a_three_handler_chain_with_a_modification() {
    let r = Receiver::start().await;
    r.always(
        "/switch",
        Answer::json(json!({"data": {"client_id": 42, "softswitch_id": "sw-42"}})),
    );
    let stack = Stack::start(&config(
        "",
        &[
            handler(1, 1, "clients.create", &r.url("/switch"), ""),
            handler(2, 2, "clients.*", &r.url("/crm"), ""),
            handler(3, 3, "clients.create", &r.url("/gateway"), ""),
        ],
    ))
    .await;
    let (status, body) = stack
        .post(
            "/events",
            &json!({"id": "e2e-1", "event": "clients.create", "data": {"client_id": 42}}),
        )
        .await;
    assert_eq!(
        (status, &body["events"][0]["status"]),
        (202, &json!("queued")),
        "{body}"
    );
    let state = stack.wait_for("e2e-1", "succeeded", WAIT).await;
    assert_eq!(r.paths(), ["/switch", "/crm", "/gateway"]);
    assert_eq!(
        r.received()[2].json()["data"]["softswitch_id"],
        "sw-42",
        "later handlers see the modified data"
    );
    let outcomes: Vec<&str> = state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["modified", "processed", "processed"]);
    assert_eq!(state["key"], "client:42");
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_forbid_or_return_modified_data() {
    let r = Receiver::start().await;
    let stack = Stack::start(&config(
        "",
        &[
            handler(
                1,
                1,
                "clients.create",
                &r.url("/risk"),
                "phase = \"before\"\non_error = \"forbid\"",
            ),
            handler(
                2,
                2,
                "clients.create",
                &r.url("/normalise"),
                "phase = \"before\"",
            ),
        ],
    ))
    .await;
    r.once(
        "/risk",
        Answer::json(json!({"decision": "forbid", "reason": "credit score too low"})),
    );
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"name": "acme"}}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        (&d["decision"], &d["reason"], &d["forbidden_by"]),
        (&json!("forbid"), &json!("credit score too low"), &json!(1))
    );
    assert_eq!(r.paths(), ["/risk"], "the chain stops at the forbid");

    r.always(
        "/normalise",
        Answer::json(json!({"data": {"name": "ACME"}})),
    );
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"name": "acme"}}),
        )
        .await;
    assert_eq!(
        (status, &d["decision"], &d["data"]),
        (200, &json!("allow"), &json!({"name": "ACME"})),
        "{d}"
    );
    assert_eq!(d["handlers"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_handler_recovers_without_recalling_the_handlers_before_it() {
    let r = Receiver::start().await;
    r.once("/flaky", Answer::status(503));
    let stack = Stack::start(&config(
        "[defaults]\nretry = { schedule = [\"1s\", \"1s\", \"1s\"] }",
        &[
            handler(1, 1, "clients.update", &r.url("/first"), ""),
            handler(2, 2, "clients.update", &r.url("/flaky"), ""),
        ],
    ))
    .await;
    stack
        .post(
            "/events",
            &json!({"id": "e2e-retry", "event": "clients.update", "data": {"client_id": 7}}),
        )
        .await;
    let state = stack.wait_for("e2e-retry", "succeeded", WAIT).await;
    assert_eq!(
        r.paths(),
        ["/first", "/flaky", "/flaky"],
        "handler 1 is called exactly once"
    );
    assert_eq!(state["attempts"], json!({"1": 1, "2": 2}));
    assert_eq!(r.received()[2].json()["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_one_key_keep_their_order_through_a_failure() {
    let r = Receiver::start().await;
    r.once("/switch", Answer::status(500));
    let stack = Stack::start(&config(
        "[defaults]\nretry = { schedule = [\"1s\", \"1s\", \"1s\"] }",
        &[handler(1, 1, "clients.*", &r.url("/switch"), "")],
    ))
    .await;
    let batch = json!([
        {"id": "o-1", "event": "clients.create", "key": "client:9", "data": {"step": 1}},
        {"id": "o-2", "event": "clients.update", "key": "client:9", "data": {"step": 2}},
        {"id": "o-3", "event": "clients.update", "key": "client:9", "data": {"step": 3}},
    ]);
    let (status, body) = stack.post("/events", &batch).await;
    assert_eq!(status, 202, "{body}");
    stack.wait_for("o-3", "succeeded", WAIT).await;
    let steps: Vec<Value> = r
        .received()
        .iter()
        .map(|x| x.json()["data"]["step"].clone())
        .collect();
    assert_eq!(
        steps,
        [json!(1), json!(1), json!(2), json!(3)],
        "the failed first event is retried before the others run"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_id_is_acknowledged_as_a_duplicate_and_never_run_twice() {
    let r = Receiver::start().await;
    let stack = Stack::start(&config(
        "",
        &[handler(1, 1, "accounts.create", &r.url("/gw"), "")],
    ))
    .await;
    let event = json!({"id": "dup-1", "event": "accounts.create", "data": {"account_id": 1}});
    assert_eq!(
        stack.post("/events", &event).await.1["events"][0]["status"],
        "queued"
    );
    stack.wait_for("dup-1", "succeeded", WAIT).await;
    let (status, body) = stack.post("/events", &event).await;
    assert_eq!(
        (status, &body["events"][0]["status"]),
        (202, &json!("duplicate"))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.paths(), ["/gw"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors_and_queue_nothing() {
    let r = Receiver::start().await;
    let stack = Stack::start(&config(
        "",
        &[handler(1, 1, "clients.create", &r.url("/x"), "")],
    ))
    .await;
    let good = r#"{"id":"never","event":"clients.create","data":{}}"#;
    let (s, b) = stack
        .request(
            reqwest::Method::POST,
            "/events",
            Some(good),
            Some("Bearer wrong"),
        )
        .await;
    assert_eq!((s, &b["error"]["code"]), (401, &json!("unauthorized")));
    let (s, b) = stack
        .request(reqwest::Method::POST, "/events", Some(good), None)
        .await;
    assert_eq!((s, &b["error"]["code"]), (401, &json!("unauthorized")));
    let bearer = format!("Bearer {TOKEN}");
    let (s, b) = stack
        .request(
            reqwest::Method::POST,
            "/events",
            Some("{\"event\":"),
            Some(&bearer),
        )
        .await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!("malformed")));
    let (s, b) = stack.request(reqwest::Method::POST, "/events", Some(r#"[{"id":"ok-1","event":"clients.create","data":{}},{"id":"bad","event":"clients.craete","data":{}}]"#), Some(&bearer)).await;
    assert_eq!((s, &b["error"]["code"]), (422, &json!("invalid_event")));
    assert!(
        b["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `clients.create`?"),
        "{b}"
    );
    let big = format!(
        r#"{{"event":"clients.create","data":{{"x":"{}"}}}}"#,
        "a".repeat(300 * 1024)
    );
    let (s, b) = stack
        .request(reqwest::Method::POST, "/events", Some(&big), Some(&bearer))
        .await;
    assert_eq!((s, &b["error"]["code"]), (413, &json!("too_large")));
    assert_eq!(
        stack.queue.depth().await.unwrap(),
        (0, 0),
        "nothing was queued"
    );
    assert_eq!(stack.event("ok-1").await.0, 404, "nothing was recorded");
    assert_eq!(stack.event("never").await.0, 404);
    assert!(r.paths().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_is_dead_lettered_after_its_last_attempt() {
    let r = Receiver::start().await;
    r.always("/down", Answer::status(503));
    let stack = Stack::start(&config(
        "[defaults]\nretry = { schedule = [\"1s\", \"1s\"] }",
        &[handler(1, 1, "import.failed", &r.url("/down"), "")],
    ))
    .await;
    stack
        .post(
            "/events",
            &json!({"id": "dead-1", "event": "import.failed", "data": {"import_id": 3}}),
        )
        .await;
    let state = stack.wait_for("dead-1", "dead", WAIT).await;
    assert_eq!(r.paths().len(), 3, "three attempts");
    assert!(
        state["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{state}"
    );
    assert_eq!(
        stack.queue.depth().await.unwrap().1,
        1,
        "on the dead-letter queue"
    );

    // The endpoint is fixed; `hooks replay --dead` puts the event back.
    r.always("/down", Answer::ok());
    let events = hooks_core::store::events::EventStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.names.events_table,
        stack.emu.endpoint(),
    );
    let replayed = hooks_core::replay::replay_dead(&events, &stack.queue, None, false)
        .await
        .unwrap();
    assert_eq!(replayed.replayed, ["dead-1"]);
    stack.wait_for("dead-1", "succeeded", WAIT).await;
    assert_eq!(r.paths().len(), 4);
    assert_eq!(
        r.received()[3].json()["attempt"],
        1,
        "a replay starts a fresh schedule"
    );
    assert_eq!(stack.queue.depth().await.unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_change_is_live_for_the_next_event_within_seconds() {
    let r = Receiver::start().await;
    let v1 = config("", &[handler(1, 1, "subscriptions.*", &r.url("/old"), "")]);
    let stack = Stack::start(&v1).await;
    stack
        .post(
            "/events",
            &json!({"id": "c-1", "event": "subscriptions.renew", "data": {"subscription_id": 1}}),
        )
        .await;
    stack.wait_for("c-1", "succeeded", WAIT).await;
    stack
        .sync(&config(
            "",
            &[handler(2, 1, "subscriptions.*", &r.url("/new"), "")],
        ))
        .await;
    let synced = std::time::Instant::now();
    // The functions cache the config for at most 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    stack
        .post(
            "/events",
            &json!({"id": "c-2", "event": "subscriptions.renew", "data": {"subscription_id": 1}}),
        )
        .await;
    stack.wait_for("c-2", "succeeded", WAIT).await;
    assert_eq!(
        r.paths(),
        ["/old", "/new"],
        "the event after the sync ran the new config"
    );
    eprintln!("new config used {:?} after the sync", synced.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_handlers_are_called_and_logged_but_change_nothing() {
    let r = Receiver::start().await;
    r.always(
        "/trial-modify",
        Answer::json(json!({"data": {"client_id": 42, "tariff": "trial"}})),
    );
    r.always("/trial-down", Answer::status(500));
    r.always(
        "/trial-risk",
        Answer::json(json!({"decision": "forbid", "reason": "the new scoring says no"})),
    );
    let stack = Stack::start(&config(
        "[defaults]\nretry = { schedule = [\"1s\", \"1s\"] }",
        &[
            handler(
                1,
                1,
                "clients.create",
                &r.url("/trial-modify"),
                "status = \"shadow\"",
            ),
            handler(
                2,
                2,
                "clients.create",
                &r.url("/trial-down"),
                "status = \"shadow\"",
            ),
            handler(3, 3, "clients.create", &r.url("/crm"), ""),
            handler(
                4,
                1,
                "clients.create",
                &r.url("/trial-risk"),
                "phase = \"before\"\nstatus = \"shadow\"",
            ),
        ],
    ))
    .await;
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"client_id": 42}}),
        )
        .await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
    assert_eq!(d["handlers"][0]["shadow"], json!(true), "{d}");
    assert_eq!(d["handlers"][0]["outcome"], json!("forbidden"), "{d}");

    stack
        .post(
            "/events",
            &json!({"id": "e2e-shadow", "event": "clients.create", "data": {"client_id": 42}}),
        )
        .await;
    let state = stack.wait_for("e2e-shadow", "succeeded", WAIT).await;
    let crm = r
        .received()
        .into_iter()
        .find(|q| q.path == "/crm")
        .expect("the crm was called");
    assert_eq!(
        crm.json()["data"],
        json!({"client_id": 42}),
        "a shadow modification is not applied"
    );
    let calls: Vec<(u64, bool, &str)> = state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["handler_id"].as_u64().unwrap(),
                c["shadow"].as_bool().unwrap_or(false),
                c["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (1, true, "modified"),
            (2, true, "failed"),
            (3, false, "processed")
        ]
    );
    // The failed shadow call is never retried.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        r.paths().iter().filter(|p| *p == "/trial-down").count(),
        1,
        "{:?}",
        r.paths()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn billings_traceparent_reaches_every_handler_call_and_the_log() {
    let r = Receiver::start().await;
    let stack = Stack::start(&config(
        "",
        &[
            handler(1, 1, "clients.create", &r.url("/switch"), ""),
            handler(2, 2, "clients.create", &r.url("/crm"), ""),
            handler(
                3,
                1,
                "clients.create",
                &r.url("/risk"),
                "phase = \"before\"",
            ),
        ],
    ))
    .await;
    let billing = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, body) = stack
        .post_with(
            "/events",
            &json!({"id": "e2e-traced", "event": "clients.create", "data": {"client_id": 1}}),
            &[("traceparent", billing)],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let state = stack.wait_for("e2e-traced", "succeeded", WAIT).await;
    let sent: Vec<String> = r
        .received()
        .iter()
        .filter(|q| q.path != "/risk")
        .map(|q| q.header("traceparent").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sent.len(), 2, "{:?}", r.paths());
    for t in &sent {
        assert!(
            t.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && t.ends_with("-01"),
            "billing's trace, a span of its own: {t}"
        );
        assert_ne!(t, billing);
    }
    assert_ne!(sent[0], sent[1], "one span per call");
    let logged: Vec<String> = state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                c["span_id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(logged, sent, "the log keeps each call's span");
    assert_eq!(
        state["trace"].as_str(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{state}"
    );
    assert!(
        stack.log().contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the function logs carry the trace id"
    );

    // Without one (or with a broken one), each event starts its own trace;
    // a decision's calls carry one too.
    let (status, body) = stack
        .post_with(
            "/events",
            &json!([
                {"id": "e2e-untraced-1", "event": "clients.create", "data": {"client_id": 2}},
                {"id": "e2e-untraced-2", "event": "clients.create", "data": {"client_id": 3}}
            ]),
            &[("traceparent", "00-not-a-trace")],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let a = stack.wait_for("e2e-untraced-1", "succeeded", WAIT).await;
    let b = stack.wait_for("e2e-untraced-2", "succeeded", WAIT).await;
    let trace_of = |s: &Value| s["trace"].as_str().unwrap_or_default().to_owned();
    assert_ne!(trace_of(&a), trace_of(&b));
    assert_eq!(trace_of(&a).len(), 32);
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"client_id": 4}}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    let risk = r
        .received()
        .into_iter()
        .find(|q| q.path == "/risk")
        .unwrap();
    assert!(risk.header("traceparent").is_some_and(|t| t.len() == 55));
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_decide_which_handlers_run_and_the_metric_lines_count_the_calls() {
    let r = Receiver::start().await;
    // The softswitch sets the tariff; collections runs only for pro or
    // enterprise clients in debt, as the softswitch left the data.
    r.always(
        "/switch",
        Answer::json(json!({"data": {"client_id": 7, "balance": -5, "tariff": "pro"}})),
    );
    let stack = Stack::start(&config(
        "",
        &[
            handler(1, 1, "clients.update", &r.url("/switch"), ""),
            handler(
                2,
                2,
                "clients.update",
                &r.url("/collect"),
                r#"when = 'data.balance < 0 && data.tariff in ["pro", "enterprise"]'"#,
            ),
            handler(
                3,
                3,
                "clients.update",
                &r.url("/crm"),
                "when = 'data.missing > 1'",
            ),
            handler(
                4,
                1,
                "clients.update",
                &r.url("/risk"),
                "phase = \"before\"\nwhen = 'data.balance < -100'",
            ),
        ],
    ))
    .await;
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.update", "data": {"client_id": 7, "balance": -5}}),
        )
        .await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");
    assert_eq!(d["handlers"][0]["outcome"], json!("condition_false"), "{d}");

    stack
        .post(
            "/events",
            &json!({"id": "e2e-when", "event": "clients.update", "data": {"client_id": 7, "balance": 10}}),
        )
        .await;
    let state = stack.wait_for("e2e-when", "succeeded", WAIT).await;
    let calls: Vec<(u64, &str, bool)> = state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["handler_id"].as_u64().unwrap(),
                c["outcome"].as_str().unwrap(),
                c["error"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (1, "modified", false),
            (2, "processed", false),
            (3, "condition_false", true)
        ],
        "collections sees the balance the softswitch returned (-5), not the one sent (10)"
    );
    assert_eq!(
        r.paths(),
        ["/switch", "/collect"],
        "the risk check and the CRM are never called"
    );

    // The functions' metric lines (EMF) are in their logs: calls made, per
    // handler; a condition that was false is not a call.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = metric_lines(&stack.log());
        if m.iter().any(|d| d.get("EventsCompleted").is_some())
            || std::time::Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sum = |metric: &str, handler: Option<&str>| -> u64 {
        metrics
            .iter()
            .filter(|d| d["HandlerId"].as_str() == handler)
            .filter_map(|d| d[metric].as_u64())
            .sum()
    };
    assert_eq!(sum("EventsAccepted", None), 1, "{metrics:?}");
    assert_eq!(sum("Decisions", None), 1);
    assert_eq!(sum("EventsCompleted", None), 1);
    assert_eq!(sum("Calls", Some("1")), 1);
    assert_eq!(sum("Calls", Some("2")), 1);
    assert_eq!(sum("Calls", Some("3")), 0, "its condition was false");
    assert_eq!(sum("Calls", Some("4")), 0, "its condition was false");
    assert!(
        metrics.iter().all(|d| d["Stack"] == "hooks-local"),
        "the template's stack name, resolved locally"
    );
}

/// The EMF documents in the functions' logs.
fn metric_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.contains("\"_aws\""))
        .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sick_handler_is_paused_its_events_wait_in_order_and_flow_after_a_probe() {
    use hooks_core::store::ConfigStore;
    let r = Receiver::start().await;
    r.always("/flaky", Answer::status(503));
    // Five attempts a second apart would dead-letter an event within
    // seconds; paused after two failures in a row, nothing is.
    let stack = Stack::start(&config(
        "[defaults]\nretry = { schedule = [\"1s\", \"1s\", \"1s\", \"1s\"] }\npause_after = 2\npause_window = \"0s\"\nprobe_every = \"2s\"",
        &[
            handler(1, 1, "clients.update", &r.url("/flaky"), ""),
            handler(2, 1, "accounts.create", &r.url("/crm"), ""),
        ],
    ))
    .await;
    let send = |id: &str, event: &str, key: u64| json!({"id": id, "event": event, "data": {"client_id": key}});
    stack
        .post("/events", &send("p-1", "clients.update", 1))
        .await;
    stack
        .post("/events", &send("p-2", "clients.update", 2))
        .await;
    let store = stack.config_store();
    let deadline = std::time::Instant::now() + WAIT;
    let state = loop {
        if let Some(h) = store.health_of(1).await.unwrap()
            && h.paused.is_some()
        {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "never paused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let paused = state.paused.clone().unwrap();
    assert_eq!(paused.by, "auto");

    // While it is paused: another event of the first key waits behind it,
    // and an event that does not need the handler goes on.
    stack
        .post("/events", &send("p-3", "clients.update", 1))
        .await;
    stack
        .post("/events", &send("p-other", "accounts.create", 9))
        .await;
    stack.wait_for("p-other", "succeeded", WAIT).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    for id in ["p-1", "p-2"] {
        let (_, e) = stack.event(id).await;
        assert_eq!(e["status"], "failed", "{e}");
        assert!(
            e["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("attempts not used"),
            "{e}"
        );
    }
    // What the pause allows, read from the call records (endpoint hits
    // cannot tell a probe from an attempt). A dispatch instance reads the
    // pause through its config cache (2 s), so an attempt already due may
    // still be made within that time (and, on a loaded machine, start up
    // to 2 s after its gate was passed); after it, only probes, claimed one
    // at a time at least `probe_every` (2 s) apart.
    let visible = paused.since + chrono::Duration::seconds(4);
    let calls = calls_of_handler(&stack, 1, &["p-1", "p-2", "p-3"]).await;
    let late: Vec<&HandlerCall> = calls
        .iter()
        .filter(|c| !c.probe && c.started_at > visible)
        .collect();
    assert!(
        late.is_empty(),
        "only probes once the pause is visible (since {}): {late:?}",
        paused.since
    );
    let probes: Vec<&HandlerCall> = calls.iter().filter(|c| c.probe).collect();
    assert!(
        !probes.is_empty(),
        "the paused handler was probed: {calls:?}"
    );
    for pair in probes.windows(2) {
        let apart = pair[1].started_at - pair[0].started_at;
        assert!(
            apart >= chrono::Duration::milliseconds(1900),
            "probes at least probe_every apart: {probes:?}"
        );
    }
    assert!(
        r.paths().iter().filter(|p| *p == "/flaky").count() >= calls.len(),
        "every recorded call reached the endpoint"
    );

    // The endpoint recovers: the next probe resumes the handler and the
    // waiting events flow, the first key's in order.
    r.always("/flaky", Answer::ok());
    for id in ["p-1", "p-2", "p-3"] {
        stack.wait_for(id, "succeeded", WAIT).await;
    }
    let clients: Vec<u64> = r
        .received()
        .iter()
        .filter(|q| q.path == "/flaky" && q.json()["id"] != "p-2")
        .map(|q| {
            q.json()["id"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("p-")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    let last_p1 = clients.iter().rposition(|c| *c == 1).unwrap();
    let first_p3 = clients.iter().position(|c| *c == 3).unwrap();
    assert!(last_p1 < first_p3, "p-3 waited behind p-1: {clients:?}");
    let state = store.health_of(1).await.unwrap().unwrap();
    assert!(state.paused.is_none(), "{state:?}");
    let changes: Vec<(&str, &str)> = state
        .history
        .iter()
        .map(|c| (c.to.as_str(), c.by.as_str()))
        .collect();
    assert_eq!(changes, [("paused", "auto"), ("resumed", "auto")]);
    // Waiting used none of the attempts: every ordinary call between the
    // pause becoming visible and the resume is absent, and each event
    // succeeded within its five attempts.
    let resumed = state.history[1].at;
    let calls = calls_of_handler(&stack, 1, &["p-1", "p-2", "p-3"]).await;
    let waiting: Vec<&HandlerCall> = calls
        .iter()
        .filter(|c| !c.probe && c.started_at > visible && c.started_at < resumed)
        .collect();
    assert!(waiting.is_empty(), "no attempt while paused: {waiting:?}");
    assert!(
        calls.iter().filter(|c| !c.probe).all(|c| c.attempt <= 5),
        "{calls:?}"
    );
    assert!(
        metric_lines(&stack.log())
            .iter()
            .any(|d| d["PausedHandlers"] == 1),
        "the paused gauge reached the function logs"
    );
}

/// One recorded call of a handler, as `GET /events/{id}` shows it.
#[derive(Debug)]
struct HandlerCall {
    attempt: u64,
    probe: bool,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// The recorded calls of `handler` for `events`, in the order they started.
async fn calls_of_handler(stack: &Stack, handler: u64, events: &[&str]) -> Vec<HandlerCall> {
    let mut calls = Vec::new();
    for id in events {
        let (_, e) = stack.event(id).await;
        for c in e["calls"].as_array().into_iter().flatten() {
            if c["handler_id"].as_u64() != Some(handler) {
                continue;
            }
            calls.push(HandlerCall {
                attempt: c["attempt"].as_u64().unwrap(),
                probe: c["probe"] == json!(true),
                started_at: c["started_at"].as_str().unwrap().parse().unwrap(),
            });
        }
    }
    calls.sort_by_key(|c| c.started_at);
    calls
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_range_replays_through_the_current_config_in_key_order_and_plan_impact_counts_it() {
    use hooks_core::config::impact::{Recorded, impact};
    use hooks_core::config::{Config, ParseOptions};
    use hooks_core::replay::{Range, replay_range};
    use hooks_core::store::events::EventStore;
    use hooks_core::store::logs::LogStore;
    let r = Receiver::start().await;
    let toml = config(
        "",
        &[
            handler(1, 1, "clients.*", &r.url("/crm"), ""),
            handler(2, 1, "accounts.*", &r.url("/billing-mirror"), ""),
        ],
    );
    let stack = Stack::start(&toml).await;
    let send = |id: &str, event: &str, key: u64, balance: i64| json!({"id": id, "event": event, "data": {"client_id": key, "balance": balance}});
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    stack
        .post("/events", &send("r-1", "clients.create", 1, -5))
        .await;
    stack
        .post("/events", &send("r-2", "clients.update", 1, 10))
        .await;
    stack
        .post("/events", &send("r-3", "accounts.create", 2, 0))
        .await;
    stack
        .post(
            "/decisions",
            &json!({"id": "r-decision", "event": "clients.create", "data": {"client_id": 3}}),
        )
        .await;
    for id in ["r-1", "r-2", "r-3"] {
        stack.wait_for(id, "succeeded", WAIT).await;
    }
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let log = LogStore::new(ddb.clone(), &stack.names.events_table, stack.emu.endpoint());
    let events = EventStore::new(ddb, &stack.names.events_table, stack.emu.endpoint());
    let live = Config::parse("handlers.toml", &toml, &ParseOptions::default()).unwrap();

    // What a change would have done, from the recorded events (no call).
    let proposed = Config::parse(
        "handlers.toml",
        &config(
            "",
            &[
                handler(1, 1, "clients.create", &r.url("/crm"), ""),
                handler(2, 1, "accounts.*", &r.url("/billing-mirror"), ""),
                handler(
                    3,
                    2,
                    "clients.*",
                    &r.url("/collect"),
                    "when = 'data.balance < 0'",
                ),
            ],
        ),
        &ParseOptions::default(),
    )
    .unwrap();
    let (records, more) = log.received(start, None, None, 100).await.unwrap();
    assert!(!more);
    assert_eq!(records.len(), 4, "three events and a decision");
    let recorded: Vec<Recorded<'_>> = records
        .iter()
        .map(|r| Recorded {
            event: r.event.event.event,
            phase: r.phase(),
            data: &r.event.event.data,
        })
        .collect();
    let calls_before = r.paths().len();
    let i = impact(
        Some(&live),
        &proposed,
        &[(1, "h1".into()), (3, "h3".into())],
        &recorded,
    );
    assert_eq!(
        (
            i.handlers[0].live,
            i.handlers[0].proposed,
            i.handlers[0].lost
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (i.handlers[1].new, i.handlers[1].proposed),
        (1, 1),
        "r-1 only: balance < 0"
    );
    assert_eq!(r.paths().len(), calls_before, "no handler is called");

    // Replay the range to handler 2 alone: only the event it is called for.
    let queue = stack.queue.clone();
    let only = Range {
        since: start,
        until: None,
        event: None,
        handler: Some(2),
        max: 100,
    };
    let dry = replay_range(&log, &events, &queue, &live, &only, false)
        .await
        .unwrap();
    assert_eq!(dry.replayed, ["r-3"]);
    assert_eq!(r.paths().len(), calls_before, "a dry run sends nothing");
    replay_range(&log, &events, &queue, &live, &only, true)
        .await
        .unwrap();
    wait_calls(&r, "/billing-mirror", 2).await;

    // The whole range through the current config: oldest first, decisions left out.
    let all = Range {
        handler: None,
        ..only
    };
    let done = replay_range(&log, &events, &queue, &live, &all, true)
        .await
        .unwrap();
    assert_eq!(done.replayed, ["r-1", "r-2", "r-3"]);
    assert_eq!(done.skipped.len(), 1, "{:?}", done.skipped);
    assert!(done.skipped[0].1.contains("decision"));
    wait_calls(&r, "/crm", 4).await;
    let crm: Vec<(String, String)> = r
        .received()
        .iter()
        .filter(|q| q.path == "/crm")
        .map(|q| {
            (
                q.json()["id"].as_str().unwrap().to_owned(),
                q.header("webhook-id").unwrap_or("").to_owned(),
            )
        })
        .collect();
    let ids: Vec<&str> = crm.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["r-1", "r-2", "r-1", "r-2"],
        "key order kept in the replay"
    );
    assert_eq!(
        crm[0].1, crm[2].1,
        "the same webhook-id: idempotent handlers see a repeat"
    );
}

/// Waits until `path` has been called `n` times.
async fn wait_calls(r: &Receiver, path: &str, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while r.paths().iter().filter(|p| *p == path).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: {:?}",
            r.paths()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
