//! The handler chain against a real HTTP receiver.

use std::time::Duration;

use hooks_core::chain::{AfterOutcome, Outcome, Resolution, Verdict, run_before};
use hooks_core::config::Phase;
use hooks_core::events::Event;
use hooks_core::signature::SigningKey;
use hooks_tests::{Answer, Receiver};
use serde_json::json;

use crate::{SECRET, after, config, event, http_handler, resume, targets};

#[tokio::test]
async fn handlers_run_by_priority_then_id_each_seeing_the_data_left_before_it() {
    let r = Receiver::start().await;
    let c = config(
        &[
            http_handler(7, 2, &r.url("/p2-id7"), ""),
            http_handler(3, 2, &r.url("/p2-id3"), ""),
            http_handler(9, 1, &r.url("/p1-id9"), ""),
        ]
        .concat(),
    );
    r.always(
        "/p1-id9",
        Answer::json(json!({"data": {"client_id": 42, "switch_id": "sw-9"}})),
    );
    r.always("/p2-id3", Answer::echo());
    let ev = event(json!({"client_id": 42}));
    let run = after(&targets(), &c, &ev).await;
    assert_eq!(run.outcome, AfterOutcome::Completed);
    assert_eq!(r.paths(), ["/p1-id9", "/p2-id3", "/p2-id7"]);
    let outcomes: Vec<_> = run.handlers.iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Modified, Outcome::Processed, Outcome::Processed],
        "an echo changes nothing"
    );
    let got = r.received();
    assert_eq!(
        got[1].json()["data"],
        json!({"client_id": 42, "switch_id": "sw-9"})
    );
    assert_eq!(
        got[2].json()["data"],
        json!({"client_id": 42, "switch_id": "sw-9"})
    );
    assert_eq!(got[0].json()["handler"], json!({"id": 9, "name": "h9"}));
    assert_eq!(got[0].json()["event"], "clients.create");
    assert_eq!(got[0].json()["phase"], "after");
    assert_eq!(got[0].json()["attempt"], 1);
    assert_eq!(got[0].json()["id"], ev.id.as_str());
    assert_eq!(
        run.progress.data,
        got[2].json()["data"].as_object().cloned().unwrap()
    );
}

#[tokio::test]
async fn a_forbid_stops_the_chain() {
    let r = Receiver::start().await;
    let c = config(
        &[
            http_handler(1, 1, &r.url("/a"), ""),
            http_handler(2, 2, &r.url("/b"), ""),
            http_handler(3, 3, &r.url("/c"), ""),
        ]
        .concat(),
    );
    r.always(
        "/b",
        Answer::json(json!({"decision": "forbid", "reason": "client is blacklisted"})),
    );
    let ev = event(json!({"client_id": 1}));
    let run = after(&targets(), &c, &ev).await;
    assert_eq!(
        run.outcome,
        AfterOutcome::Forbidden {
            handler: 2,
            reason: "client is blacklisted".into()
        }
    );
    assert_eq!(r.paths(), ["/a", "/b"]);
}

#[tokio::test]
async fn a_failed_handler_is_retried_from_where_it_stopped_without_recalling_the_ones_before() {
    let r = Receiver::start().await;
    let c = config(
        &[
            http_handler(1, 1, &r.url("/first"), ""),
            http_handler(2, 2, &r.url("/flaky"), ""),
            http_handler(3, 3, &r.url("/last"), ""),
        ]
        .concat(),
    );
    r.always(
        "/first",
        Answer::json(json!({"data": {"client_id": 5, "account": "A-5"}})),
    );
    r.once("/flaky", Answer::status(503));
    let ev = event(json!({"client_id": 5}));
    let t = targets();
    let first = after(&t, &c, &ev).await;
    assert!(
        matches!(
            first.outcome,
            AfterOutcome::Blocked {
                handler: 2,
                attempt: 1,
                retryable: true,
                ..
            }
        ),
        "{:?}",
        first.outcome
    );
    // The progress is what a later attempt resumes from (dispatch stores it).
    let stored = serde_json::to_string(&first.progress).unwrap();
    let second = resume(&t, &c, &ev, serde_json::from_str(&stored).unwrap()).await;
    assert_eq!(second.outcome, AfterOutcome::Completed);
    assert_eq!(r.paths(), ["/first", "/flaky", "/flaky", "/last"]);
    let got = r.received();
    assert_eq!(got[2].json()["attempt"], 2);
    assert_eq!(got[2].json()["data"]["account"], "A-5");
    assert_eq!(
        got[1].header("webhook-id"),
        got[2].header("webhook-id"),
        "webhook-id is stable across retries"
    );
    assert_ne!(
        got[0].header("webhook-id"),
        got[1].header("webhook-id"),
        "and unique per handler"
    );
}

#[tokio::test]
async fn requests_are_signed_per_standard_webhooks() {
    let r = Receiver::start().await;
    let c = config(&format!(
        "[[handler]]\nid = 1\nname = \"signed\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"{}\", secret = {{ env = \"HOOK_SECRET\" }}, headers = {{ \"X-Tenant\" = \"acme\" }} }}\n",
        r.url("/signed")
    ));
    let ev = event(json!({"client_id": 1}));
    after(&targets(), &c, &ev).await;
    let got = &r.received()[0];
    let id = got.header("webhook-id").unwrap();
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    let sig = got.header("webhook-signature").unwrap();
    assert!(sig.starts_with("v1,"));
    assert_eq!(id, format!("{}_h1", ev.id));
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert!(
        SigningKey::parse(SECRET)
            .unwrap()
            .verify(id, ts, &got.body, sig),
        "the receiver can verify the signature"
    );
    assert_eq!(got.header("x-tenant"), Some("acme"));
    assert_eq!(got.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_decision_applies_on_error_and_one_deadline_for_the_whole_chain() {
    let r = Receiver::start().await;
    let before = |id: u32, prio: u32, path: &str, on_error: &str| {
        format!(
            "[[handler]]\nid = {id}\nname = \"b{id}\"\nevent = \"clients.create\"\nphase = \"before\"\npriority = {prio}\non_error = \"{on_error}\"\nhttp = {{ url = \"{}\", timeout = \"5s\" }}\n",
            r.url(path)
        )
    };
    let c = config(
        &[
            before(1, 1, "/modify", "forbid"),
            before(2, 2, "/broken", "allow"),
            before(3, 3, "/slow", "allow"),
            before(4, 4, "/never", "forbid"),
        ]
        .concat(),
    );
    r.always(
        "/modify",
        Answer::json(json!({"data": {"client_id": 8, "credit_limit": 100}})),
    );
    r.always("/broken", Answer::status(500));
    r.always("/slow", Answer::ok().after(Duration::from_secs(3)));
    let ev = event(json!({"client_id": 8}));
    let chain = c.chain_for(Event::ClientsCreate, Phase::Before);
    let d = run_before(
        &targets(),
        &chain,
        &c.defaults,
        &ev,
        Duration::from_millis(1500),
    )
    .await;
    let outcomes: Vec<_> = d
        .handlers
        .iter()
        .map(|h| (h.handler_id, h.outcome, h.resolution))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Outcome::Modified, None),
            (2, Outcome::Failed, Some(Resolution::Allow)),
            (3, Outcome::TimedOut, Some(Resolution::Allow)),
            (4, Outcome::Skipped, Some(Resolution::Forbid)),
        ]
    );
    assert_eq!(
        d.verdict,
        Verdict::Forbid,
        "handler 4 fails closed when the deadline leaves it no time"
    );
    assert_eq!(d.data.get("credit_limit"), Some(&json!(100)));
    assert!(!r.paths().contains(&"/never".to_owned()));
    assert_eq!(r.received()[0].json()["phase"], "before");
}

#[tokio::test]
async fn a_decision_that_allows_returns_the_modified_data() {
    let r = Receiver::start().await;
    let c = config(&format!(
        "[[handler]]\nid = 1\nname = \"normalise\"\nevent = \"clients.create\"\nphase = \"before\"\npriority = 1\nhttp = {{ url = \"{}\" }}\n",
        r.url("/normalise")
    ));
    r.always(
        "/normalise",
        Answer::json(json!({"decision": "allow", "data": {"name": "ACME LTD"}, "extra": 1})),
    );
    let ev = event(json!({"name": "acme ltd"}));
    let d = run_before(
        &targets(),
        &c.chain_for(Event::ClientsCreate, Phase::Before),
        &c.defaults,
        &ev,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.data.get("name"), Some(&json!("ACME LTD")));
}

/// A forbid that the reader cannot parse strictly (Python's `json.dumps`
/// writes `NaN`; `1e400`, a lone surrogate, trailing data, 130 levels) is
/// an unusable answer, resolved by `on_error`: fail closed forbids, never a
/// silent allow. A plain `OK` (not declared JSON) is still "processed".
#[tokio::test]
async fn a_forbid_that_is_not_strict_json_fails_closed() {
    let hostile = [
        r#"{"decision":"forbid","reason":"risk","score":NaN}"#.to_owned(),
        r#"{"decision":"forbid","reason":"risk","score":1e400}"#.to_owned(),
        r#"{"decision":"forbid","reason":"\ud800"}"#.to_owned(),
        r#"{"decision":"forbid","reason":"risk"} trailing"#.to_owned(),
        format!(
            r#"{{"decision":"forbid","deep":{}{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        ),
        r#"{"decision":"forbid","decision":"allow"}"#.to_owned(),
    ];
    for body in hostile {
        let r = Receiver::start().await;
        let c = config(&format!(
            "[[handler]]\nid = 1\nname = \"risk\"\nevent = \"clients.create\"\nphase = \"before\"\npriority = 1\non_error = \"forbid\"\nhttp = {{ url = \"{}\" }}\n",
            r.url("/risk")
        ));
        r.always(
            "/risk",
            Answer::ok()
                .header("content-type", "application/json")
                .body(body.clone()),
        );
        let d = run_before(
            &targets(),
            &c.chain_for(Event::ClientsCreate, Phase::Before),
            &c.defaults,
            &event(json!({"client_id": 1})),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(d.verdict, Verdict::Forbid, "{body}: {d:?}");
        let call = &d.handlers[0];
        assert_eq!(call.outcome, Outcome::Failed, "{body}");
        assert_eq!(call.resolution, Some(Resolution::Forbid), "{body}");
        assert!(
            call.error
                .as_deref()
                .is_some_and(|e| e.starts_with("unusable answer: ")),
            "{body}: {:?}",
            call.error
        );
    }

    // Declared JSON but plain text: unusable. Not declared: processed.
    let r = Receiver::start().await;
    let c = config(&format!(
        "[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"{}\" }}\n[[handler]]\nid = 2\nname = \"b\"\nevent = \"clients.create\"\npriority = 2\nhttp = {{ url = \"{}\" }}\n",
        r.url("/plain"),
        r.url("/declared")
    ));
    r.always("/plain", Answer::ok().body("OK"));
    r.always(
        "/declared",
        Answer::ok()
            .header("content-type", "application/json; charset=utf-8")
            .body("OK"),
    );
    let run = after(&targets(), &c, &event(json!({"client_id": 1}))).await;
    let outcomes: Vec<_> = run.handlers.iter().map(|h| h.outcome).collect();
    assert_eq!(outcomes, [Outcome::Processed, Outcome::Failed], "{run:?}");
    assert!(
        run.handlers[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("declared as JSON")),
        "{run:?}"
    );
}
