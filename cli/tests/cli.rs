//! The `hooks` command as a user runs it: exit codes, output, real endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use hooks_tests::{Answer, Receiver};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn hooks(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hooks"));
    // Only what the test gives: never a developer's AWS settings.
    cmd.args(args)
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn validate_accepts_the_repository_file() {
    let o = hooks(&["validate"], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("handlers.toml: valid"));
}

#[tokio::test]
async fn validate_reports_every_problem_with_its_place_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handlers.toml");
    std::fs::write(
        &file,
        "version = 1\n[[handler]]\nid = 1\nname = \"x\"\nevent = \"clients.craete\"\npriority = 0\nhttp = { url = \"https://a.example.com\" }\n",
    )
    .unwrap();
    let o = hooks(&["validate", file.to_str().unwrap()], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("handlers.toml:5:9"), "{err}");
    assert!(err.contains("did you mean `clients.create`?"), "{err}");
    assert!(err.contains("handlers.toml:6:12"), "{err}");
    assert!(err.contains("2 errors found"), "{err}");
}

#[tokio::test]
async fn validate_says_when_the_file_cannot_be_read() {
    let o = hooks(&["validate", "no-such-file.toml"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: cannot read no-such-file.toml"),
        "{}",
        stderr(&o)
    );
}

fn ids(table: &str) -> Vec<u32> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn list_filters_like_the_advanced_search() {
    let o = hooks(&["list", "--event", "clients.create"], &[]).await;
    assert_eq!(
        ids(&stdout(&o)),
        [1, 10, 31, 40, 5],
        "in the order they run: before first"
    );
    let o = hooks(
        &[
            "list",
            "--event",
            "clients.create",
            "--status",
            "enabled",
            "--phase",
            "after",
        ],
        &[],
    )
    .await;
    assert_eq!(ids(&stdout(&o)), [10, 31, 40]);
    let o = hooks(&["list", "--type", "script"], &[]).await;
    assert_eq!(ids(&stdout(&o)), [40]);
    let o = hooks(&["list", "--event", "subscriptions.*"], &[]).await;
    assert_eq!(ids(&stdout(&o)), [2, 30, 5]);
    let o = hooks(&["list", "--status", "disabled", "--json"], &[]).await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["id"], 50);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let o = hooks(&["list", "--event", "client.create"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `clients.create`?"));
}

fn write_config(dir: &Path, r: &Receiver) -> PathBuf {
    let file = dir.join("handlers.toml");
    std::fs::write(
        &file,
        format!(
            r#"version = 1
[[handler]]
id = 1
name = "risk"
event = "clients.create"
phase = "before"
priority = 1
http = {{ url = "{risk}" }}

[[handler]]
id = 2
name = "softswitch"
event = "clients.create"
priority = 1
http = {{ url = "{switch}" }}

[[handler]]
id = 3
name = "crm"
event = "clients.*"
priority = 2
http = {{ url = "{crm}" }}
"#,
            risk = r.url("/risk"),
            switch = r.url("/switch"),
            crm = r.url("/crm")
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn try_makes_data_from_the_schema_and_refuses_what_ingest_would() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &r);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen(
            "version = 1\n",
            "version = 1\n[schemas]\ndir = \"schemas\"\n",
            1,
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/clients.create.json"),
        json!({
            "type": "object",
            "required": ["client_id"],
            "properties": {
                "client_id": {"type": "integer", "examples": [42]},
                "tariff": {"type": "string", "enum": ["pro", "basic"]},
            },
        })
        .to_string(),
    )
    .unwrap();
    let allow = [("HOOKS_ALLOW_NETWORKS", "127.0.0.0/8")];
    let f = file.to_str().unwrap();
    let o = hooks(
        &["try", "clients.create", "--example", "--file", f, "--json"],
        &allow,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["data"], json!({"client_id": 42, "tariff": "pro"}));
    assert_eq!(r.paths(), ["/switch", "/crm"]);

    let o = hooks(
        &[
            "try",
            "clients.create",
            "--data",
            r#"{"client_id": "42"}"#,
            "--file",
            f,
        ],
        &allow,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("data.client_id") && err.contains("/properties/client_id/type"),
        "{err}"
    );
    assert_eq!(r.paths().len(), 2, "nothing was called");
    // A type without a schema has no example.
    let o = hooks(&["try", "clients.update", "--example", "--file", f], &allow).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no schema"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn try_runs_the_chain_for_real_and_prints_one_json_document() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &r);
    r.always(
        "/switch",
        Answer::json(json!({"data": {"client_id": 42, "switch_id": "sw-1"}})),
    );
    let allow = [("HOOKS_ALLOW_NETWORKS", "127.0.0.0/8")];
    let o = hooks(
        &[
            "try",
            "clients.create",
            "--data",
            r#"{"client_id": 42}"#,
            "--file",
            file.to_str().unwrap(),
            "--json",
        ],
        &allow,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["verdict"], "allow");
    assert_eq!(doc["data"], json!({"client_id": 42, "switch_id": "sw-1"}));
    let outcomes: Vec<&str> = doc["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["modified", "processed"]);
    assert_eq!(r.paths(), ["/switch", "/crm"]);

    r.always(
        "/risk",
        Answer::json(json!({"decision": "forbid", "reason": "credit score too low"})),
    );
    let o = hooks(
        &[
            "try",
            "clients.create",
            "--phase",
            "before",
            "--data",
            "{}",
            "--file",
            file.to_str().unwrap(),
        ],
        &allow,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("verdict: forbid"), "{text}");
    assert!(text.contains("reason: credit score too low"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn try_refuses_loopback_unless_allowed_and_rejects_bad_data() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &r);
    let o = hooks(
        &[
            "try",
            "clients.create",
            "--data",
            "{}",
            "--file",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("HOOKS_ALLOW_NETWORKS"),
        "{}",
        stdout(&o)
    );
    assert!(r.paths().is_empty());
    let o = hooks(
        &[
            "try",
            "clients.create",
            "--data",
            "[1]",
            "--file",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--data must be a JSON object"));
    let o = hooks(&["try", "clients.creat", "--data", "{}"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
}

mod live {
    //! plan / sync / history / list --live against the local emulator, as a
    //! developer or CI runs them: environment variables only.

    use super::*;
    use hooks_tests::{Emulator, closed_port, unique};

    struct Env {
        _emu: Emulator,
        vars: Vec<(&'static str, String)>,
    }

    impl Env {
        async fn new() -> Env {
            let emu = Emulator::start();
            let mut vars = emu.env();
            vars.push(("HOOKS_CONFIG_TABLE", unique("cli-config")));
            vars.push(("HOOKS_ACTOR", "ci-bot".to_owned()));
            let env = Env { _emu: emu, vars };
            let o = env.run(&["bootstrap"]).await;
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            env
        }

        async fn run(&self, args: &[&str]) -> Output {
            let vars: Vec<(&str, &str)> = self.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            hooks(args, &vars).await
        }
    }

    fn file_with(dir: &Path, priority: u32) -> String {
        let file = dir.join("handlers.toml");
        std::fs::write(
            &file,
            format!(
                "version = 1\n[[handler]]\nid = 1\nname = \"CRM\"\nevent = \"clients.*\"\npriority = {priority}\nhttp = {{ url = \"https://crm.example.com/hooks\" }}\n"
            ),
        )
        .unwrap();
        file.to_str().unwrap().to_owned()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn plan_sync_history_and_list_live() {
        let env = Env::new().await;
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(dir.path(), 1);

        let o = env.run(&["plan", "--file", &file]).await;
        assert_eq!(o.status.code(), Some(2), "changes: exit 2\n{}", stderr(&o));
        assert!(
            stdout(&o).contains("against nothing live yet (first sync)"),
            "{}",
            stdout(&o)
        );
        assert!(stdout(&o).contains("+ 1 \"CRM\" (new)"));

        let o = env.run(&["sync", "--file", &file]).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "no terminal and no --yes: refused"
        );
        assert!(stderr(&o).contains("pass --yes"), "{}", stderr(&o));

        let o = env.run(&["sync", "--file", &file, "--yes"]).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("Synced: revision 1 is live (1 handlers"),
            "{}",
            stdout(&o)
        );

        let o = env.run(&["plan", "--file", &file]).await;
        assert_eq!(o.status.code(), Some(0), "no changes: exit 0");
        let o = env.run(&["sync", "--file", &file, "--yes"]).await;
        assert_eq!(o.status.code(), Some(0));
        assert!(
            stdout(&o).starts_with("No changes: live revision 1"),
            "{}",
            stdout(&o)
        );

        let file = file_with(dir.path(), 3);
        let o = env
            .run(&["plan", "--file", &file, "--format", "markdown"])
            .await;
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stdout(&o).contains("| ✏️ | 1 | CRM | `priority`: `1` → `3` |"),
            "{}",
            stdout(&o)
        );
        let o = env
            .run(&["sync", "--file", &file, "--yes", "--against", "7"])
            .await;
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("planned against revision 7, but revision 1 is live"),
            "{}",
            stderr(&o)
        );
        let o = env
            .run(&["sync", "--file", &file, "--yes", "--against", "1"])
            .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let o = env.run(&["history"]).await;
        let text = stdout(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("2 (live)")
                && lines[1].contains("ci-bot")
                && lines[1].contains("+0 ~1 -0"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("1 ") && lines[2].contains("+1 ~0 -0"),
            "{text}"
        );

        let o = env.run(&["list", "--live", "--json"]).await;
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["priority"], 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pause_and_resume_by_hand_show_in_list_live_and_plan() {
        let env = Env::new().await;
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(dir.path(), 1);
        let o = env.run(&["sync", "--file", &file, "--yes"]).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let o = env
            .run(&["pause", "1", "--reason", "CRM maintenance until 14:00"])
            .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("Paused handler 1 (CRM)."),
            "{}",
            stdout(&o)
        );
        let o = env.run(&["pause", "1"]).await;
        assert!(
            stdout(&o).contains("Nothing to do: handler 1 is paused since"),
            "{}",
            stdout(&o)
        );

        let o = env.run(&["list", "--live"]).await;
        let text = stdout(&o);
        assert!(text.contains("enabled PAUSED"), "{text}");
        assert!(
            text.contains("by ci-bot: CRM maintenance until 14:00"),
            "{text}"
        );
        let o = env.run(&["list", "--live", "--json"]).await;
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["health"]["paused"]["by"], "ci-bot");

        let o = env.run(&["plan", "--file", &file]).await;
        assert_eq!(o.status.code(), Some(0), "the pause is not a config change");
        assert!(
            stdout(&o).contains("Runtime state") && stdout(&o).contains("handler 1 is paused"),
            "{}",
            stdout(&o)
        );

        let o = env.run(&["resume", "1", "--reason", "back"]).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("Resumed handler 1 (CRM)."),
            "{}",
            stdout(&o)
        );
        let o = env.run(&["list", "--live", "--json"]).await;
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let history: Vec<&str> = v[0]["health"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["to"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["paused", "resumed"]);
        assert!(v[0]["health"].get("paused").is_none());

        let o = env.run(&["pause", "99"]).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("no handler 99"), "{}", stderr(&o));
        // Resuming a handler that never existed is an error, not "running".
        let o = env.run(&["resume", "99999"]).await;
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stderr(&o).contains("no handler 99999 in the live revision 1 and no state kept for it"),
            "{}",
            stderr(&o)
        );
        // A reason is bounded: every later change must still fit the item.
        let long = "x".repeat(501);
        let o = env.run(&["pause", "1", "--reason", &long]).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("at most 500"), "{}", stderr(&o));
        let o = env.run(&["pause", "1", "--reason", "two\nlines"]).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

        // --impact and a range replay read the recorded events (none here).
        let file = file_with(dir.path(), 2);
        let o = env
            .run(&["plan", "--file", &file, "--impact", "--since", "1d"])
            .await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("Impact on the 0 events recorded since"),
            "{}",
            stdout(&o)
        );
        assert!(
            stdout(&o).contains("1 \"CRM\": called for 0 events (live: 0)"),
            "{}",
            stdout(&o)
        );
        let o = env
            .run(&["replay", "--since", "1h", "--event", "clients.create"])
            .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o)
                .contains("0 would replay through live revision 1, 0 skipped; nothing was sent"),
            "{}",
            stdout(&o)
        );
        let o = env
            .run(&["replay", "--dead", "--since", "1h", "--from-start"])
            .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("0 replayed"), "{}", stdout(&o));
        let o = env.run(&["replay", "--dead", "--yes"]).await;
        assert_eq!(o.status.code(), Some(2), "--yes is for a range");
        let o = env.run(&["replay", "--since", "1h", "--from-start"]).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let o = env
            .run(&["replay", "--since", "1h", "--event", "clients.craete"])
            .await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("an event type"), "{}", stderr(&o));
        // An empty range is said, not replayed as nothing.
        let o = env.run(&["replay", "--since", "1h", "--until", "2h"]).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("is not after --since"),
            "{}",
            stderr(&o)
        );
        for limit in ["0", "100001"] {
            let o = env
                .run(&["replay", "--since", "1h", "--limit", limit])
                .await;
            assert_eq!(o.status.code(), Some(2), "--limit {limit}: {}", stderr(&o));
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_emulator_that_is_down_is_one_line() {
        let port = closed_port().await;
        let endpoint = format!("http://127.0.0.1:{port}");
        let o = hooks(
            &["history"],
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "x"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await;
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: cannot reach DynamoDB at {endpoint}")),
            "{err}"
        );
    }
}
