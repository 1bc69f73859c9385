//! Failure handling of the HTTP target, one handler at a time.

use std::time::Duration;

use hooks_core::chain::{AfterOutcome, CallRecord, Outcome};
use hooks_core::targets::{NetworkPolicy, Targets};
use hooks_tests::{Answer, Receiver, closed_port};
use serde_json::json;

use crate::{after, config, event, http_handler, targets, targets_with};

/// Calls one after handler at `url` and returns its record.
async fn call(url: &str, t: &Targets) -> (CallRecord, AfterOutcome) {
    let c = config(&http_handler(1, 1, url, ""));
    let ev = event(json!({"client_id": 1}));
    let mut run = after(t, &c, &ev).await;
    (run.handlers.remove(0), run.outcome)
}

#[tokio::test]
async fn server_errors_are_retryable_and_kept_in_the_log() {
    let r = Receiver::start().await;
    r.always("/x", Answer::status(500).body("database is down"));
    let (rec, outcome) = call(&r.url("/x"), &targets()).await;
    assert_eq!(
        (rec.outcome, rec.status_code, rec.retryable),
        (Outcome::Failed, Some(500), Some(true))
    );
    assert_eq!(rec.error.as_deref(), Some("HTTP 500 Internal Server Error"));
    assert_eq!(rec.response.as_deref(), Some("database is down"));
    assert!(matches!(
        outcome,
        AfterOutcome::Blocked {
            retryable: true,
            ..
        }
    ));
}

#[tokio::test]
async fn client_errors_are_permanent() {
    let r = Receiver::start().await;
    r.always("/gone", Answer::status(410));
    let (rec, _) = call(&r.url("/gone"), &targets()).await;
    assert_eq!(
        (rec.outcome, rec.status_code, rec.retryable),
        (Outcome::Failed, Some(410), Some(false))
    );
}

#[tokio::test]
async fn too_many_requests_is_retryable_and_retry_after_is_read() {
    let r = Receiver::start().await;
    r.always("/busy", Answer::status(429).header("retry-after", "120"));
    let (rec, outcome) = call(&r.url("/busy"), &targets()).await;
    assert_eq!(
        (rec.retryable, rec.retry_after_secs),
        (Some(true), Some(120))
    );
    assert!(matches!(
        outcome,
        AfterOutcome::Blocked {
            retry_after_secs: Some(120),
            ..
        }
    ));
}

#[tokio::test]
async fn a_slow_handler_times_out() {
    let r = Receiver::start().await;
    r.always("/slow", Answer::ok().after(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let (rec, _) = call(&r.url("/slow"), &targets()).await; // timeout = "2s"
    assert_eq!(
        (rec.outcome, rec.retryable),
        (Outcome::TimedOut, Some(true))
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up at the timeout"
    );
}

#[tokio::test]
async fn connection_refused_is_a_retryable_failure() {
    let port = closed_port().await;
    let (rec, _) = call(&format!("http://127.0.0.1:{port}/x"), &targets()).await;
    assert_eq!(
        (rec.outcome, rec.status_code, rec.retryable),
        (Outcome::Failed, None, Some(true))
    );
    assert!(
        rec.error.as_deref().unwrap().contains("onnection refused"),
        "{:?}",
        rec.error
    );
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let r = Receiver::start().await;
    r.always(
        "/old",
        Answer::status(302).header("location", &r.url("/new")),
    );
    let (rec, _) = call(&r.url("/old"), &targets()).await;
    assert_eq!(
        (rec.outcome, rec.status_code, rec.retryable),
        (Outcome::Failed, Some(302), Some(false))
    );
    assert!(rec.error.as_deref().unwrap().contains("not followed"));
    assert_eq!(r.paths(), ["/old"]);
}

#[tokio::test]
async fn an_oversized_answer_is_a_failure_and_only_an_excerpt_is_kept() {
    let r = Receiver::start().await;
    r.always("/big", Answer::ok().body(vec![b'x'; 1024 * 1024])); // limit in tests: 64 KiB
    let (rec, _) = call(&r.url("/big"), &targets()).await;
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(false)));
    assert!(rec.error.as_deref().unwrap().contains("larger than"));
    assert!(rec.response.unwrap().len() <= 2048 + '…'.len_utf8());
}

#[tokio::test]
async fn internal_addresses_are_refused_before_anything_is_sent() {
    let public_only = targets_with(NetworkPolicy::public_only());
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/x",
        "http://[::1]:9/x",
        "http://127.0.0.1:9/x",
    ] {
        let (rec, _) = call(url, &public_only).await;
        assert_eq!(
            (rec.outcome, rec.retryable),
            (Outcome::Failed, Some(false)),
            "{url}"
        );
        assert!(
            rec.error.as_deref().unwrap().contains("is not allowed"),
            "{url}: {:?}",
            rec.error
        );
        assert!(
            rec.duration_ms < 1000,
            "{url}: refused without a connection attempt"
        );
    }
}

#[tokio::test]
async fn names_that_resolve_to_internal_addresses_are_refused_at_resolution() {
    let r = Receiver::start().await;
    let url = format!("http://localhost:{}/x", r.addr().port());
    let (rec, _) = call(&url, &targets_with(NetworkPolicy::public_only())).await;
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("is not allowed (loopback)"),
        "{:?}",
        rec.error
    );
    assert!(r.paths().is_empty(), "nothing reached the receiver");
    // With the allow-list the same name works.
    let (rec, _) = call(&url, &targets()).await;
    assert_eq!(rec.outcome, Outcome::Processed);
}

#[tokio::test]
async fn a_missing_secret_is_a_permanent_failure_that_names_it() {
    let r = Receiver::start().await;
    let c = config(&format!(
        "[[handler]]\nid = 1\nname = \"s\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"{}\", secret = {{ env = \"NOT_SET_ANYWHERE\" }} }}\n",
        r.url("/s")
    ));
    let ev = event(json!({}));
    let run = after(&targets(), &c, &ev).await;
    let rec = &run.handlers[0];
    assert_eq!(rec.retryable, Some(false));
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("env:NOT_SET_ANYWHERE")
    );
    assert!(r.paths().is_empty(), "an unsigned request is never sent");
}

#[tokio::test]
async fn an_oversized_streamed_answer_without_length_is_cut_off_too() {
    let r = Receiver::start().await;
    r.always("/stream", Answer::ok().streamed(64, 4096)); // 256 KiB in chunks; limit 64 KiB
    let (rec, _) = call(&r.url("/stream"), &targets()).await;
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(false)));
    assert!(
        rec.error.as_deref().unwrap().contains("larger than"),
        "{:?}",
        rec.error
    );
}

#[tokio::test]
async fn an_address_refused_by_policy_receives_nothing_in_any_spelling() {
    let r = Receiver::start().await;
    let port = r.addr().port();
    let spellings = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://0x7f.1:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("https://[::ffff:127.0.0.1]:{port}/x"), // plain http only for loopback hosts
    ];
    let public_only = targets_with(NetworkPolicy::public_only());
    for url in &spellings {
        let (rec, _) = call(url, &public_only).await;
        assert_eq!(rec.outcome, Outcome::Failed, "{url}");
        assert!(
            rec.error.as_deref().unwrap().contains("is not allowed"),
            "{url}: {:?}",
            rec.error
        );
    }
    assert!(r.paths().is_empty(), "nothing reached the receiver");
    // The same receiver is reached when the allow-list admits loopback.
    let (rec, _) = call(&spellings[1], &targets()).await;
    assert_eq!(rec.outcome, Outcome::Processed);
    assert_eq!(r.paths(), ["/x"]);
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_a_permanent_failure() {
    let r = Receiver::start().await;
    let c = config(&http_handler(1, 1, &r.url("/x"), ""));
    let mut ev = event(json!({}));
    ev.id = "evt\n1".into(); // not a valid header value for webhook-id
    let run = after(&targets(), &c, &ev).await;
    assert_eq!(
        (run.handlers[0].outcome, run.handlers[0].retryable),
        (Outcome::Failed, Some(false))
    );
    assert!(r.paths().is_empty());
}
