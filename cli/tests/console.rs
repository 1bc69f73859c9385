//! The operator console in a real browser (headless Chromium through its
//! WebDriver), over data made by the real pipeline under the local stack:
//! events sent to ingest, run by dispatch under `cargo lambda watch`, handlers
//! that are real HTTP servers. The console is the `hooks console` binary,
//! reaching AWS through the local endpoint as an operator's would.
//!
//! Each page's screenshot is saved in `target/screenshots/` (and, with
//! `HOOKS_UPDATE_SCREENSHOTS=1`, in `docs/`, where the README shows them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use hooks_tests::browser::Browser;
use hooks_tests::{Answer, Receiver, Stack, root};
use serde_json::json;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(120);

fn handlers(r: &Receiver) -> String {
    format!(
        r#"version = 1

[defaults]
retry = {{ schedule = ["1s"] }}

# Decides whether a client may be created.
[[handler]]
id = 1
name = "Credit check"
event = "clients.create"
phase = "before"
priority = 1
on_error = "forbid"
http = {{ url = "{risk}", timeout = "3s" }}

# Creates the account on the softswitch; answers with its id.
[[handler]]
id = 2
name = "Softswitch"
event = "clients.create"
priority = 1
http = {{ url = "{switch}", timeout = "3s" }}

[[handler]]
id = 3
name = "CRM"
event = "clients.*"
priority = 2
http = {{ url = "{crm}", timeout = "3s" }}

[[handler]]
id = 4
name = "Gateway"
event = "clients.delete"
priority = 3
http = {{ url = "{gateway}", timeout = "3s" }}

[[handler]]
id = 5
name = "Old billing bridge"
event = "accounts.*"
priority = 5
status = "archived"
http = {{ url = "{gateway}", timeout = "3s" }}

[[handler]]
id = 6
name = "Audit script"
event = "subscriptions.*"
priority = 9
status = "disabled"
script = {{ command = ["./echo.sh"], timeout = "3s" }}
"#,
        risk = r.url("/risk"),
        switch = r.url("/switch"),
        crm = r.url("/crm"),
        gateway = r.url("/gateway"),
    )
}

/// `hooks console` on a free port, reading the stack's AWS.
async fn console(stack: &Stack) -> (Child, String) {
    let port = hooks_tests::closed_port().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hooks"));
    cmd.args(["console", "--port", &port.to_string()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", stack.running.gateway.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in stack.names.env() {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("hooks console starts");
    assert!(
        hooks_local::run::wait_for_port(port, Duration::from_secs(30)).await,
        "the console did not listen"
    );
    (child, format!("http://127.0.0.1:{port}"))
}

async fn shot(b: &Browser, name: &str) {
    let file = format!("console-{name}.png");
    b.screenshot(&Browser::screenshot_dir().join(&file)).await;
    if std::env::var_os("HOOKS_UPDATE_SCREENSHOTS").is_some() {
        b.screenshot(&root().join("docs").join(&file)).await;
    }
    let problems = b.console_problems().await;
    assert!(
        problems.is_empty(),
        "the browser console on {name}: {problems:?}"
    );
}

/// The ids in the handlers table, in its order.
async fn handler_ids(b: &Browser) -> Vec<String> {
    b.texts("#handlers tbody tr td:first-child").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_handlers_calls_events_revisions_and_the_queue() {
    let r = Receiver::start().await;
    r.always("/risk", Answer::ok());
    r.always(
        "/switch",
        Answer::json(json!({"data": {"client_id": 42, "plan": "pro", "softswitch_id": "sw-42"}})),
    );
    // A handler's answer is the attacker's: the page must show it as text.
    r.always(
        "/crm",
        Answer::json(json!({"note": "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">"})),
    );
    r.always("/gateway", Answer::status(500));
    let stack = Stack::start(&handlers(&r)).await;
    for (id, event) in [
        ("console-1", "clients.create"),
        ("console-2", "clients.update"),
        ("console-dead", "clients.delete"),
    ] {
        let (status, body) = stack
            .post(
                "/events",
                &json!({"id": id, "event": event, "data": {"client_id": 42, "plan": "basic"}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    stack.wait_for("console-1", "succeeded", WAIT).await;
    stack.wait_for("console-2", "succeeded", WAIT).await;
    stack.wait_for("console-dead", "dead", WAIT).await;
    let (status, d) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"client_id": 43}}),
        )
        .await;
    assert_eq!((status, &d["decision"]), (200, &json!("allow")), "{d}");

    let (_console, base) = console(&stack).await;
    let b = Browser::start().await;

    // Handlers: the seed's table, and its advanced search.
    b.goto(&format!("{base}/handlers")).await;
    assert_eq!(
        handler_ids(&b).await,
        ["1", "2", "3", "4", "5", "6"],
        "{}",
        b.source().await
    );
    let crm = b.find("#handlers tr[data-handler='3']").await;
    let crm = b.text(&crm).await;
    assert!(
        crm.contains("CRM") && crm.contains("clients.*") && crm.contains("enabled"),
        "{crm}"
    );
    shot(&b, "handlers").await;

    b.click(&b.find("select[name=status] option[value=archived]").await)
        .await;
    b.click(&b.find("form.filters button[type=submit]").await)
        .await;
    // A click returns before the form's navigation may have ended: wait
    // for the new page's address and its load, then read it.
    for _ in 0..100 {
        let loaded = b.try_script("return document.readyState").await == Some(json!("complete"));
        if loaded && b.url().await.contains("status=archived") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        b.url().await.contains("status=archived"),
        "{}",
        b.url().await
    );
    assert_eq!(handler_ids(&b).await, ["5"]);
    b.goto(&format!("{base}/handlers?type=script")).await;
    assert_eq!(handler_ids(&b).await, ["6"]);
    // An event pattern: the handlers of clients.create, in the order they run.
    b.goto(&format!("{base}/handlers?event=clients.create"))
        .await;
    assert_eq!(handler_ids(&b).await, ["1", "2", "3"]);
    b.goto(&format!("{base}/handlers?event=clients.*&phase=after"))
        .await;
    assert_eq!(handler_ids(&b).await, ["2", "3", "4"]);
    b.goto(&format!("{base}/handlers?status=bogus")).await;
    assert!(b.text(&b.find(".notice").await).await.contains("bogus"));
    assert_eq!(
        handler_ids(&b).await.len(),
        6,
        "a bad filter is ignored, and said so"
    );

    // A handler's page: its definition as written, and its calls.
    b.goto(&format!("{base}/handlers/2")).await;
    let definition = b.text(&b.find("#definition").await).await;
    assert!(definition.contains("name = \"Softswitch\""), "{definition}");
    let events: Vec<String> = b.texts("table.calls > tbody > tr > td:nth-child(2)").await;
    assert_eq!(events, ["console-1"]);
    shot(&b, "handler").await;

    // The event: calls in order, the modified fields, the answer as text.
    b.goto(&format!("{base}/events/console-1")).await;
    assert_eq!(b.text(&b.find("#event-status").await).await, "succeeded");
    let order: Vec<String> = b.texts("#timeline > tbody > tr > td:nth-child(3)").await;
    assert_eq!(order, ["2 Softswitch", "3 CRM"]);
    let changed = b.texts("table.changes tbody td:first-child").await;
    assert_eq!(changed, ["plan", "softswitch_id"]);
    let changes = b.text(&b.find("table.changes").await).await;
    assert!(
        changes.contains("\"basic\"") && changes.contains("\"pro\""),
        "{changes}"
    );
    for d in b.find_all("details").await {
        b.click(&d).await;
    }
    let response = b.texts("pre.response").await.join("\n");
    assert!(
        response.contains("<script>window.__xss = 1</script>"),
        "the answer is shown as text: {response}"
    );
    assert_eq!(
        b.script("return window.__xss === undefined").await,
        json!(true)
    );
    assert!(!b.source().await.contains("<script>window.__xss"));
    let same_key = b.texts("#same-key tbody td:nth-child(2)").await;
    assert!(
        same_key.contains(&"console-1".to_owned()) && same_key.contains(&"console-2".to_owned()),
        "{same_key:?}"
    );
    shot(&b, "event").await;

    // The dead event: in the dead list, with its replay command.
    b.goto(&format!("{base}/events?status=dead")).await;
    assert_eq!(
        b.texts("#events tbody td:nth-child(2)").await,
        ["console-dead"]
    );
    shot(&b, "events").await;
    b.goto(&format!("{base}/queue")).await;
    let dead = b.text(&b.find("#dead").await).await;
    assert!(dead.contains("hooks replay --event console-dead"), "{dead}");
    let copy = b.find("#dead button[data-copy]").await;
    b.click(&copy).await;
    shot(&b, "queue").await;
    b.goto(&format!("{base}/events/console-dead")).await;
    assert_eq!(b.text(&b.find("#event-status").await).await, "dead");
    assert!(
        b.source()
            .await
            .contains("hooks replay --event console-dead")
    );

    // The execution log, filtered; keyboard: the skip link comes first.
    b.goto(&format!("{base}/logs?outcome=failed")).await;
    let outcomes = b.texts("table.calls > tbody > tr > td:nth-child(6)").await;
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o == "failed"),
        "{outcomes:?}"
    );
    b.goto(&format!("{base}/logs")).await;
    b.script(
        "window.focus(); if (document.activeElement) document.activeElement.blur(); return null",
    )
    .await;
    b.keys("\u{E004}").await;
    let focused = b.script("return document.activeElement.textContent").await;
    assert_eq!(focused, json!("Skip to content"));
    shot(&b, "logs").await;

    // Revisions: the live one, with its content hash.
    stack
        .sync(&handlers(&r).replace("name = \"CRM\"", "name = \"CRM (EU)\""))
        .await;
    b.goto(&format!("{base}/revisions?rev=2")).await;
    let plan = b.text(&b.find("ul.plan").await).await;
    assert!(plan.contains("3 \"CRM (EU)\" changed"), "{plan}");
    assert_eq!(
        b.texts("#revisions tbody tr td:first-child").await,
        ["2", "1"]
    );
    // The page of a revision that is not live offers its rollback. (Read
    // until it does, a few times: right after a sync, the browser was seen
    // once handing back the previous page's source.)
    let mut offered = false;
    for _ in 0..10 {
        b.goto(&format!("{base}/revisions?rev=1")).await;
        if b.source().await.contains("hooks rollback 1") {
            offered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(offered, "{}", b.source().await);
    shot(&b, "revisions").await;
    b.goto(&format!("{base}/no/such/page")).await;
    assert_eq!(b.title().await, "Not found · Provisioning Hooks");
}
