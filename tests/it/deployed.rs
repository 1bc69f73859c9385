//! Local is deployed: the functions run with the template's environment,
//! their secrets come only from the Secrets Manager secret, every AWS call
//! they make is checked against their policy in the template, a dead
//! instance is replaced alone, an invocation past the function's timeout is
//! killed, and nothing outlives the stack, nor the process that started it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hooks_local::template::{Deployment, Local, TEMPLATE};
use hooks_tests::{Answer, Receiver, Stack, TOKEN};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const RISK: &str = "Bearer risk-only-in-the-secret";
const CRM: &str = "Bearer crm-only-in-the-secret";

fn handlers(r: &Receiver) -> String {
    format!(
        r#"version = 1

[defaults]
retry = {{ schedule = ["1s"] }}

[[handler]]
id = 1
name = "Risk check"
event = "clients.create"
phase = "before"
priority = 1
http = {{ url = "{risk}", headers = {{ Authorization = {{ env = "RISK_TOKEN" }} }}, timeout = "3s" }}

[[handler]]
id = 2
name = "CRM"
event = "clients.*"
priority = 1
http = {{ url = "{crm}", headers = {{ Authorization = {{ env = "CRM_TOKEN" }} }}, timeout = "3s" }}

[[handler]]
id = 3
name = "Gone"
event = "accounts.delete"
priority = 1
http = {{ url = "{gone}", timeout = "3s" }}

[[handler]]
id = 4
name = "Flaky"
event = "accounts.create"
priority = 1
http = {{ url = "{flaky}", timeout = "3s" }}
"#,
        risk = r.url("/risk"),
        crm = r.url("/crm"),
        gone = r.url("/gone"),
        flaky = r.url("/flaky"),
    )
}

/// The pids of a function's instances of this stack (found by the table
/// name only this stack uses).
fn instances(binary: &str, marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        if !exe.ends_with(format!("target/debug/{binary}")) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
        if environ.contains(marker) {
            found.push((pid, environ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_secrets_and_tokens_come_only_from_the_secret_and_every_call_is_allowed() {
    let r = Receiver::start().await;
    r.always("/gone", Answer::status(410));
    // A retryable failure, then a success: dispatch counts both into the
    // handler's pause state (its own items in the config table).
    r.once("/flaky", Answer::status(503));
    let stack =
        Stack::start_with_secrets(&handlers(&r), &[("RISK_TOKEN", RISK), ("CRM_TOKEN", CRM)]).await;

    // A before handler, run by ingest.
    let (status, body) = stack
        .post(
            "/decisions",
            &json!({"event": "clients.create", "data": {"client_id": 1}}),
        )
        .await;
    assert_eq!(
        (status, &body["decision"]),
        (200, &json!("allow")),
        "{body}"
    );
    // An after handler, run by dispatch; and a permanent failure, dead-lettered.
    for (id, event) in [
        ("s-1", "clients.create"),
        ("s-2", "accounts.delete"),
        ("s-3", "accounts.create"),
    ] {
        let (status, body) = stack
            .post(
                "/events",
                &json!({"id": id, "event": event, "data": {"client_id": 1, "account_id": 2}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    stack.wait_for("s-1", "succeeded", WAIT).await;
    stack.wait_for("s-2", "dead", WAIT).await;
    stack.wait_for("s-3", "succeeded", WAIT).await;
    let auth_of = |path: &str| -> Vec<String> {
        r.received()
            .iter()
            .filter(|q| q.path == path)
            .map(|q| q.header("authorization").unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        auth_of("/risk"),
        [RISK],
        "ingest's before handler got its secret"
    );
    assert_eq!(
        auth_of("/crm"),
        [CRM],
        "dispatch's after handler got its secret"
    );

    // No secret value is in a function's environment.
    let marker = format!("HOOKS_EVENTS_TABLE={}", stack.names.events_table);
    for binary in ["ingest", "dispatch"] {
        let found = instances(binary, &marker);
        assert!(!found.is_empty(), "no running {binary} instance found");
        for (pid, environ) in found {
            for secret in [RISK, CRM, TOKEN, "HOOKS_INGEST_TOKENS", "RISK_TOKEN"] {
                assert!(
                    !environ.contains(secret),
                    "{binary} (pid {pid}) has `{secret}` in its environment"
                );
            }
            assert!(environ.contains("HOOKS_SECRETS_ARN=arn:aws:secretsmanager:"));
        }
    }

    // Every call was allowed by the function's policy in the template…
    let calls = stack.running.gateway.calls();
    assert!(
        stack.running.gateway.denied().is_empty(),
        "{:#?}",
        stack.running.gateway.denied()
    );
    let callers: BTreeSet<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    assert_eq!(callers, BTreeSet::from(["dispatch", "ingest"]));

    // …and every statement is needed: without any one of them, some call
    // the functions made would have been denied.
    let local = Local {
        names: stack.names.clone(),
        parameters: [
            ("SecretsArn".to_owned(), stack.running.secret_arn.clone()),
            ("AllowNetworks".to_owned(), String::new()),
        ]
        .into(),
    };
    let deployed = Deployment::parse(TEMPLATE, &local).unwrap();
    let mut unneeded = Vec::new();
    for f in &deployed.functions {
        for (i, s) in f.policy.iter().enumerate() {
            let mut without = f.clone();
            without.policy.remove(i);
            let denied = calls
                .iter()
                .filter(|c| c.function == f.binary)
                .any(|c| !without.allows(&c.action, &c.resource));
            if !denied {
                unneeded.push(format!("{}/{}", f.binary, s.sid));
            }
        }
    }
    assert!(
        unneeded.is_empty(),
        "statements no call needed (too broad a policy, or a path the test misses): {unneeded:?}"
    );
}

#[test]
fn a_removed_statement_is_denied_by_the_gateway() {
    let local = Local {
        names: hooks_core::settings::ResourceNames::prefixed("p"),
        parameters: [(
            "SecretsArn".to_owned(),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf".to_owned(),
        )]
        .into(),
    };
    let events = hooks_local::template::table_arn("p-events");
    let full = Deployment::parse(TEMPLATE, &local).unwrap();
    assert!(
        full.function("ingest")
            .unwrap()
            .allows("dynamodb:PutItem", &events)
    );
    // The template with ingest's `Events` statement taken out.
    let cut = TEMPLATE.replacen(
        "            - Sid: Events\n              Effect: Allow\n              Action: [dynamodb:GetItem, dynamodb:PutItem]\n              Resource:\n                Fn::GetAtt: [EventsTable, Arn]\n",
        "",
        1,
    );
    assert_ne!(cut, TEMPLATE, "the statement to remove was found");
    let without = Deployment::parse(&cut, &local).unwrap();
    assert!(
        !without
            .function("ingest")
            .unwrap()
            .allows("dynamodb:PutItem", &events)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dispatch_instance_is_replaced() {
    let r = Receiver::start().await;
    r.once("/crm", Answer::ok().after(Duration::from_secs(60)));
    let stack =
        Stack::start_with_secrets(&handlers(&r), &[("RISK_TOKEN", RISK), ("CRM_TOKEN", CRM)]).await;
    let send = |id: &'static str, client: u32| {
        let stack = &stack;
        async move {
            let (status, body) = stack
                .post(
                    "/events",
                    &json!({"id": id, "event": "clients.update", "data": {"client_id": client}}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
    };
    send("k-1", 1).await;
    let started = Instant::now();
    while !r.paths().iter().any(|p| p == "/crm") {
        assert!(
            started.elapsed() < WAIT,
            "the handler was never called\n{}",
            stack.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = format!("HOOKS_EVENTS_TABLE={}", stack.names.events_table);
    let watcher = stack.running.watcher_pid("dispatch");
    let victims = instances("dispatch", &marker);
    assert!(!victims.is_empty());
    for (pid, _) in &victims {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let killed = Instant::now();
    while stack.running.restarts("dispatch") < victims.len() {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the dead instances were not replaced\n{}",
            stack.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only the instances were replaced, not the watcher (which would cut
    // every other invocation), and the one the busy instance was answering
    // ended with Lambda's error.
    assert_eq!(stack.running.watcher_pid("dispatch"), watcher);
    assert!(
        stack.log().contains("1 invocation(s) failed"),
        "{}",
        stack.log()
    );
    // Another client's event goes through on the replacement.
    send("k-2", 2).await;
    stack.wait_for("k-2", "succeeded", WAIT).await;
    // The interrupted event is still on its way: its record is as before
    // the run (a run is written when it ends), and its message comes back
    // after the queue's visibility timeout, as on AWS.
    let (_, body) = stack.event("k-1").await;
    assert_eq!(body["status"], "accepted", "{body}");
    assert_eq!(body["calls"], json!([]), "{body}");
    // When the stack stops, every process it started stops with it: the
    // watchers, cargo, the sandboxes and the instances.
    drop(stack);
    let stopped = Instant::now();
    loop {
        let left = processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "still running after the stack stopped: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An instance that hangs in an invocation (stopped with SIGSTOP) is killed
/// at the function's timeout, as Lambda kills it: the invocation ends with
/// `Sandbox.Timedout`, a new instance takes over, the watcher goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_invocation_past_the_timeout_is_killed() {
    let r = Receiver::start().await;
    r.once("/crm", Answer::ok().after(Duration::from_secs(120)));
    let stack =
        Stack::start_with_secrets(&handlers(&r), &[("RISK_TOKEN", RISK), ("CRM_TOKEN", CRM)]).await;
    let timeout = stack
        .running
        .deployment
        .functions
        .iter()
        .find(|f| f.binary == "dispatch")
        .map(|f| f.timeout)
        .unwrap();
    let (status, body) = stack
        .post(
            "/events",
            &json!({"id": "t-1", "event": "clients.update", "data": {"client_id": 1}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let started = Instant::now();
    while !r.paths().iter().any(|p| p == "/crm") {
        assert!(
            started.elapsed() < WAIT,
            "the handler was never called\n{}",
            stack.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = format!("HOOKS_EVENTS_TABLE={}", stack.names.events_table);
    let watcher = stack.running.watcher_pid("dispatch");
    let frozen = instances("dispatch", &marker);
    assert!(!frozen.is_empty());
    for (pid, _) in &frozen {
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
    }
    let stopped = Instant::now();
    // The busy instance is killed at its deadline (the idle ones, frozen
    // too, are not: nothing is asked of them).
    while !stack.log().contains("ran past the timeout") {
        assert!(
            stopped.elapsed() < timeout + Duration::from_secs(30),
            "the hung instance was not killed\n{}",
            stack.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gone: Vec<u32> = frozen
        .iter()
        .map(|(pid, _)| *pid)
        .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert_eq!(gone.len(), 1, "one instance was busy: {frozen:?}");
    assert!(
        stack.log().contains(&format!(
            "timed out after {:.2} seconds",
            timeout.as_secs_f64()
        )) || stack.log().contains(&format!(
            "past the timeout of {:.2} s; 1 invocation(s) failed",
            timeout.as_secs_f64()
        )),
        "{}",
        stack.log()
    );
    assert_eq!(stack.running.watcher_pid("dispatch"), watcher);
    for (pid, _) in &frozen {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
    }
    // Another client's event goes through.
    let (status, body) = stack
        .post(
            "/events",
            &json!({"id": "t-2", "event": "clients.update", "data": {"client_id": 2}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    stack.wait_for("t-2", "succeeded", WAIT).await;
}

/// Every process whose environment holds `marker` (this stack's table
/// name), but this one.
fn processes_with(marker: &str) -> Vec<(u32, std::path::PathBuf)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&environ).contains(marker) {
            found.push((
                pid,
                std::fs::read_link(entry.path().join("exe")).unwrap_or_default(),
            ));
        }
    }
    found
}

/// Where [`holds_a_stack_until_killed`] writes its watchers' and emulator's pids and its
/// stack's marker; unset, that test does nothing.
const HOLD_FILE: &str = "HOOKS_TEST_HOLD_FILE";

/// Run only as the child of [`a_stack_ends_with_the_process_that_started_it`]:
/// starts a stack, says what to look for, and waits to be killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child of a_stack_ends_with_the_process_that_started_it"]
async fn holds_a_stack_until_killed() {
    let Some(file) = std::env::var_os(HOLD_FILE) else {
        return;
    };
    let r = Receiver::start().await;
    r.once("/crm", Answer::ok().after(Duration::from_secs(600)));
    let stack =
        Stack::start_with_secrets(&handlers(&r), &[("RISK_TOKEN", RISK), ("CRM_TOKEN", CRM)]).await;
    // An instance of each function, dispatch's in the middle of a call.
    let (status, body) = stack
        .post(
            "/events",
            &json!({"id": "held-1", "event": "clients.update", "data": {"client_id": 1}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    while !r.paths().iter().any(|p| p == "/crm") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut pids: Vec<String> = ["ingest", "dispatch"]
        .iter()
        .map(|b| stack.running.watcher_pid(b).unwrap().to_string())
        .collect();
    pids.push(stack.emu.pid().to_string());
    let marker = format!("HOOKS_EVENTS_TABLE={}", stack.names.events_table);
    std::fs::write(&file, format!("{}\n{marker}\n", pids.join(" "))).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Whether `pid` runs (a zombie has ended: only its exit status is left).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_ends_with_the_process_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("held");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "deployed::holds_a_stack_until_killed",
            "--ignored",
        ])
        .env(HOLD_FILE, &file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let held = loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && text.lines().count() == 2
        {
            break text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before its stack was up"
        );
        assert!(started.elapsed() < WAIT, "the child's stack did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lines = held.lines();
    let watchers: Vec<u32> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let marker = lines.next().unwrap().to_owned();
    // Both watchers, then the emulator.
    assert_eq!(watchers.len(), 3);
    assert!(watchers.iter().all(|p| alive(*p)), "{watchers:?}");
    for binary in ["ingest", "dispatch"] {
        assert!(
            !instances(binary, &marker).is_empty(),
            "no {binary} instance found"
        );
    }

    // No clean-up of its own can run.
    child.kill().unwrap();
    child.wait().unwrap();

    let killed = Instant::now();
    loop {
        let watching: Vec<u32> = watchers.iter().copied().filter(|p| alive(*p)).collect();
        let left = processes_with(&marker);
        if watching.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "still running after the process that started them was killed: watchers or emulator {watching:?}, instances {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
