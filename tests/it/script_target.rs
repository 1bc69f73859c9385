//! The script target: real processes, stdin/stdout, exit codes, timeouts.

use std::time::Duration;

use hooks_core::chain::{AfterRun, Outcome};
use serde_json::json;

use crate::{after, config, event, targets};

async fn run_script(command: &str, extra: &str) -> AfterRun {
    let c = config(&format!(
        "[[handler]]\nid = 1\nname = \"script\"\nevent = \"clients.create\"\npriority = 1\non_failure = \"skip\"\nscript = {{ command = [{command}], timeout = \"1s\"{extra} }}\n"
    ));
    let ev = event(json!({"client_id": 1}));
    after(&targets(), &c, &ev).await
}

#[tokio::test]
async fn a_script_that_echoes_its_input_succeeds_without_change() {
    let run = run_script("\"./echo.sh\"", "").await;
    let rec = &run.handlers[0];
    assert_eq!(rec.outcome, Outcome::Processed);
    let echoed: serde_json::Value = serde_json::from_str(rec.response.as_deref().unwrap()).unwrap();
    assert_eq!(
        echoed["event"], "clients.create",
        "the request JSON arrives on stdin"
    );
    assert_eq!(echoed["handler"]["id"], 1);
}

#[tokio::test]
async fn a_script_can_modify_the_data() {
    let run = run_script("\"./modify.sh\"", "").await;
    assert_eq!(run.handlers[0].outcome, Outcome::Modified);
    assert_eq!(run.progress.data.get("scripted"), Some(&json!(true)));
}

#[tokio::test]
async fn a_non_zero_exit_is_a_retryable_failure_with_stderr_in_the_error() {
    let run = run_script("\"./fail.sh\"", "").await;
    let rec = &run.handlers[0];
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(true)));
    assert_eq!(
        rec.error.as_deref(),
        Some("script exited with code 3: softswitch rejected the client")
    );
}

#[tokio::test]
async fn garbage_on_stdout_means_processed_without_change() {
    let run = run_script("\"./garbage.sh\"", "").await;
    assert_eq!(run.handlers[0].outcome, Outcome::Processed);
    assert_eq!(run.progress.data, event(json!({"client_id": 1})).data);
}

#[tokio::test]
async fn output_that_looks_like_json_and_does_not_parse_is_a_failure_not_a_silent_change() {
    let run = run_script("\"./nan-forbid.sh\"", "").await;
    let rec = &run.handlers[0];
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(false)));
    assert!(
        rec.error.as_deref().is_some_and(
            |e| e.starts_with("unusable answer: the answer looks like JSON but does not parse")
        ),
        "{:?}",
        rec.error
    );
}

#[tokio::test]
async fn a_timeout_kills_the_script_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let started = std::time::Instant::now();
    let run = run_script(
        "\"./hang.sh\"",
        &format!(", env = {{ PIDFILE = \"{}\" }}", pidfile.display()),
    )
    .await;
    assert_eq!(run.handlers[0].outcome, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    // The child was killed; give the kernel a moment to reap it (init adopts it).
    let mut alive = true;
    for _ in 0..50 {
        let state = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z ") {
            alive = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "the script's child {pid} outlived the timeout");
}

#[tokio::test]
async fn the_environment_holds_only_path_and_what_is_configured() {
    let run = run_script(
        "\"./env.sh\"",
        ", env = { MODE = \"audit\", TOKEN = { env = \"HOOK_SECRET\" } }",
    )
    .await;
    let out = run.handlers[0].response.clone().unwrap();
    let mut names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort_unstable();
    // `PWD` is set by the shell itself.
    assert_eq!(names, ["MODE", "PATH", "PWD", "TOKEN"], "{out}");
    assert!(
        out.contains("TOKEN=whsec_"),
        "secret references are resolved"
    );
}

#[tokio::test]
async fn endless_output_is_cut_off() {
    let run = run_script("\"./flood.sh\"", "").await;
    let rec = &run.handlers[0];
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(false)));
    assert!(
        rec.error.as_deref().unwrap().contains("larger than"),
        "{:?}",
        rec.error
    );
}

#[tokio::test]
async fn a_missing_program_is_a_permanent_failure() {
    let run = run_script("\"./does-not-exist.sh\"", "").await;
    let rec = &run.handlers[0];
    assert_eq!((rec.outcome, rec.retryable), (Outcome::Failed, Some(false)));
    assert!(rec.error.as_deref().unwrap().starts_with("cannot start"));
}

#[tokio::test]
async fn a_script_that_writes_a_lot_to_stderr_still_succeeds() {
    let run = run_script("\"./noisy.sh\"", "").await;
    assert_eq!(
        run.handlers[0].outcome,
        Outcome::Processed,
        "{:?}",
        run.handlers[0].error
    );
}

#[tokio::test]
async fn a_script_that_exits_leaving_a_child_on_stdout_is_done_when_it_exits() {
    let started = std::time::Instant::now();
    let run = run_script("\"./leave-child.sh\"", "").await;
    assert_eq!(
        run.handlers[0].outcome,
        Outcome::Processed,
        "{:?}",
        run.handlers[0].error
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the left-over child did not hold up the call"
    );
}

#[tokio::test]
async fn a_relative_scripts_folder_works_from_any_working_directory() {
    use hooks_core::targets::{HttpCaller, HttpOptions, ScriptOptions, ScriptRunner, Targets};
    // Tests run in the package folder; the runner makes the folder absolute.
    let runner = ScriptRunner::new(ScriptOptions::new("fixtures/scripts"));
    assert!(runner.scripts_dir().is_absolute());
    let t = Targets::new(HttpCaller::new(HttpOptions::default()).unwrap(), runner);
    let c = config(
        "[[handler]]\nid = 1\nname = \"s\"\nevent = \"clients.create\"\npriority = 1\nscript = { command = [\"./modify.sh\"] }\n",
    );
    let run = after(&t, &c, &event(json!({}))).await;
    assert_eq!(
        run.handlers[0].outcome,
        Outcome::Modified,
        "{:?}",
        run.handlers[0].error
    );
}

/// A link inside the scripts folder that leads out of it (`ln -s /
/// scripts/root`, then `command = ["scripts/root/bin/sh", …]`) is refused
/// by `hooks validate` and at run time.
#[tokio::test]
async fn a_link_out_of_the_scripts_folder_is_refused_when_validated_and_when_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("scripts/root")).unwrap();
    let toml = "version = 1\n[[handler]]\nid = 1\nname = \"escape\"\nevent = \"clients.create\"\npriority = 1\non_failure = \"skip\"\nscript = { command = [\"scripts/root/bin/sh\", \"-c\", \"echo pwned\"] }\n";
    let file = dir.path().join("handlers.toml");
    std::fs::write(&file, toml).unwrap();
    let err = hooks_core::config::Config::load(&file, None).unwrap_err();
    assert!(
        err.to_string().contains("outside the scripts folder")
            || format!("{err:?}").contains("outside the scripts folder"),
        "{err:?}"
    );

    let c = config(&toml["version = 1\n".len()..]);
    let targets = hooks_core::targets::Targets::new(
        hooks_core::targets::HttpCaller::new(Default::default()).unwrap(),
        hooks_core::targets::ScriptRunner::new(hooks_core::targets::ScriptOptions::new(dir.path())),
    );
    let run = after(&targets, &c, &event(json!({"client_id": 1}))).await;
    let rec = &run.handlers[0];
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(
        rec.error
            .as_deref()
            .unwrap_or("")
            .contains("outside the scripts folder"),
        "{:?}",
        rec.error
    );
    assert!(rec.response.is_none(), "nothing ran");
}
