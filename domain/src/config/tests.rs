use std::path::Path;
use std::time::Duration;

use super::*;
use crate::events::{Event, EventPattern, Group};

fn errors(src: &str) -> ConfigErrors {
    match Config::parse("handlers.toml", src, &ParseOptions::default()) {
        Ok(c) => panic!("expected errors, parsed {c:#?}"),
        Err(e) => e,
    }
}

fn rendered(src: &str) -> String {
    errors(src).render(false)
}

const HEAD: &str = "version = 1\n";

#[test]
fn the_repository_example_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = match Config::load(&root.join("handlers.toml"), Some(&root)) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    // It shows every kind of handler the product has.
    assert!(
        config
            .handlers
            .iter()
            .any(|h| h.phase == Phase::Before && h.on_error == OnError::Forbid)
    );
    assert!(
        config
            .handlers
            .iter()
            .any(|h| h.target.kind() == TargetKind::Script)
    );
    assert!(config.handlers.iter().any(|h| h.status == Status::Archived));
    let create: Vec<HandlerId> = config
        .chain_for(Event::ClientsCreate, Phase::After)
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(create, [10, 31, 40]);
}

#[test]
fn a_valid_file_means_what_it_says() {
    let src = r#"
version = 1
[defaults]
timeout = "3s"
retry = { schedule = ["1s", "2s"] }

[[handler]]
id = 7
name = "Both forms of target"
event = ["clients.create", "accounts.*"]
priority = 2
[handler.http]
url = "https://crm.example.com/hooks"
headers = { "X-Tenant" = "acme", Authorization = { env = "CRM_TOKEN" } }
secret = { env = "CRM_SECRET" }

[[handler]]
id = 8
name = "Script"
event = "import.failed"
phase = "after"
priority = 1
on_failure = "skip"
status = "disabled"
script = { command = ["scripts/x.sh", "--fast"], timeout = "1s", env = { MODE = "audit" } }
"#;
    let c = Config::parse("handlers.toml", src, &ParseOptions::default()).unwrap();
    assert_eq!(c.defaults.timeout, Duration::from_secs(3));
    assert_eq!(c.defaults.retry.attempts(), 3);
    let h = c.handler(7).unwrap();
    assert_eq!(
        h.events,
        [
            EventPattern::Exact(Event::ClientsCreate),
            EventPattern::Group(Group::Accounts)
        ]
    );
    assert_eq!(
        (h.status, h.phase, h.on_failure),
        (Status::Enabled, Phase::After, OnFailure::Block)
    );
    let Target::Http(t) = &h.target else {
        panic!("http expected")
    };
    assert_eq!(t.secret, Some(SecretRef::Env("CRM_SECRET".into())));
    assert_eq!(t.headers.len(), 2);
    assert_eq!(c.timeout_of(h), Duration::from_secs(3));
    let s = c.handler(8).unwrap();
    assert_eq!(c.timeout_of(s), Duration::from_secs(1));
    assert!(
        c.chain_for(Event::ImportFailed, Phase::After).is_empty(),
        "disabled handlers do not run"
    );
    // Stored revisions read back exactly.
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
}

#[test]
fn chain_order_is_priority_then_id() {
    let src = r#"version = 1
[[handler]]
id = 3
name = "c"
event = "clients.*"
priority = 2
http = { url = "https://a.example.com" }
[[handler]]
id = 2
name = "b"
event = "clients.create"
priority = 2
http = { url = "https://a.example.com" }
[[handler]]
id = 9
name = "a"
event = "clients.create"
priority = 1
http = { url = "https://a.example.com" }
[[handler]]
id = 1
name = "before"
event = "clients.create"
phase = "before"
priority = 1
http = { url = "https://a.example.com" }
"#;
    let c = Config::parse("h.toml", src, &ParseOptions::default()).unwrap();
    let ids: Vec<_> = c
        .chain_for(Event::ClientsCreate, Phase::After)
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, [9, 2, 3]);
    let ids: Vec<_> = c
        .chain_for(Event::ClientsCreate, Phase::Before)
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, [1]);
}

#[test]
fn empty_file() {
    insta::assert_snapshot!(rendered("  \n"));
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(rendered("version = 1\n[[handler]]\nid = \n"));
}

#[test]
fn missing_version_and_no_handlers() {
    insta::assert_snapshot!(rendered("[defaults]\ntimeout = \"1s\"\n"));
}

#[test]
fn unknown_keys_suggest_the_nearest() {
    let src = format!(
        "{HEAD}[[handlers]]\nid = 1\n\n[[handler]]\nid = 1\nname = \"x\"\nevent = \"clients.create\"\nprority = 1\nhttp = {{ url = \"https://a.example.com\", timout = \"1s\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn duplicate_id_shows_both_places() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 4\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n\n[[handler]]\nid = 4\nname = \"b\"\nevent = \"clients.update\"\npriority = 1\nhttp = {{ url = \"https://b.example.com\" }}\n"
    );
    let e = errors(&src);
    assert_eq!(e.len(), 1);
    assert_eq!(e.diagnostics()[0].location(), (10, 6));
    insta::assert_snapshot!(e.render(false));
}

#[test]
fn unknown_event_suggests_the_nearest() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"a\"\nevent = [\"clients.craete\", \"subscription.*\", \"payments.refund\"]\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn bad_priority_status_and_phase() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 0\nname = \"a\"\nevent = \"clients.create\"\npriority = 0\nstatus = \"enable\"\nphase = \"during\"\nhttp = {{ url = \"https://a.example.com\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn targets_exactly_one() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"both\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\nscript = {{ command = [\"scripts/a.sh\"] }}\n\n[[handler]]\nid = 2\nname = \"none\"\nevent = \"clients.create\"\npriority = 1\n\n[[handler]]\nid = 3\nname = \"bad script\"\nevent = \"clients.create\"\npriority = 1\nscript = {{ command = \"scripts/a.sh --fast\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn urls_must_be_https_except_on_loopback() {
    let ok = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"local\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"http://127.0.0.1:9181/x\" }}\n[[handler]]\nid = 2\nname = \"local6\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"http://[::1]:9181/x\" }}\n"
    );
    assert!(Config::parse("h.toml", &ok, &ParseOptions::default()).is_ok());
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"plain\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"http://crm.example.com/hooks\" }}\n\n[[handler]]\nid = 2\nname = \"garbage\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"not a url\" }}\n\n[[handler]]\nid = 3\nname = \"ftp\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"ftp://files.example.com/x\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn literal_secrets_are_refused() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://user:pw@a.example.com\" }}\n\n[[handler]]\nid = 2\nname = \"b\"\nevent = \"clients.create\"\npriority = 1\n[handler.http]\nurl = \"https://b.example.com\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nheaders = {{ Authorization = \"Bearer abc123\", \"Webhook-Id\" = \"x\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn bad_durations() {
    let src = format!(
        "{HEAD}[defaults]\ntimeout = 10\nretry = {{ schedule = [\"30s\", \"1d\"] }}\n\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\", timeout = \"5 secs\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn settings_that_do_not_fit_the_phase() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"after with on_error\"\nevent = \"clients.create\"\npriority = 1\non_error = \"allow\"\nhttp = {{ url = \"https://a.example.com\" }}\n\n[[handler]]\nid = 2\nname = \"before with on_failure and retry\"\nevent = \"clients.create\"\nphase = \"before\"\npriority = 1\non_failure = \"skip\"\nretry = {{ schedule = [\"1m\"] }}\nhttp = {{ url = \"https://a.example.com\" }}\n"
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn every_error_is_reported_in_one_run() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"\"\nevent = \"clients.craete\"\npriority = -1\nstatus = \"on\"\nhttp = {{ url = \"http://crm.example.com\", secret = \"abc\" }}\n\n[[handler]]\nid = 1\nname = \"b\"\nevent = \"clients.create\"\npriority = 1\nscript = {{ command = [] }}\n"
    );
    let e = errors(&src);
    let messages: Vec<&str> = e.diagnostics().iter().map(|d| d.message()).collect();
    assert_eq!(
        messages,
        [
            "`name` is empty",
            "unknown event `clients.craete`",
            "`priority` must be 1 or more",
            "invalid status `on`",
            "plain http is allowed only for loopback hosts",
            "literal secret in `secret`",
            // The second handler reuses id 1: reported although the first
            // handler has problems of its own.
            "duplicate handler id 1",
            "`command` is empty",
        ],
        "{}",
        e.render(false)
    );
}

#[test]
fn missing_scripts_are_reported_against_the_scripts_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nscript = {{ command = [\"scripts/nope.sh\"] }}\n[[handler]]\nid = 2\nname = \"b\"\nevent = \"clients.create\"\npriority = 1\nscript = {{ command = [\"scripts/crm-audit.sh\"] }}\n"
    );
    let e = Config::parse(
        "h.toml",
        &src,
        &ParseOptions {
            scripts_dir: Some(&dir),
        },
    )
    .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e.diagnostics()[0].message(),
        "script `scripts/nope.sh` not found"
    );
}

#[test]
fn huge_and_duplicate_ids_do_not_crash_validation() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 4\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n[[handler]]\nid = 4\nname = \"b\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n[[handler]]\nid = 9223372036854775807\nname = \"c\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n"
    );
    let e = errors(&src);
    let messages: Vec<&str> = e.diagnostics().iter().map(|d| d.message()).collect();
    assert_eq!(
        messages,
        [
            "duplicate handler id 4",
            "`id` must be a positive whole number"
        ]
    );
    assert_eq!(
        e.diagnostics()[0].help_text(),
        Some("ids are permanent and unique: give this handler an unused id, e.g. 5")
    );
}

#[test]
fn a_bad_version_does_not_hide_the_other_problems() {
    let src = "version = \"1\"\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.nope\"\npriority = 1\nhttp = { url = \"https://a.example.com\" }\n";
    let messages: Vec<String> = errors(src)
        .diagnostics()
        .iter()
        .map(|d| d.message().to_owned())
        .collect();
    assert_eq!(
        messages,
        [
            "`version` must be an integer",
            "unknown event `clients.nope`"
        ]
    );
}

#[test]
fn scripts_must_be_files_of_the_bundle_with_no_secrets_in_their_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/plain.sh"), "#!/bin/sh\n").unwrap();
    let script = |id: u32, command: &str, env: &str| {
        format!(
            "[[handler]]\nid = {id}\nname = \"s{id}\"\nevent = \"clients.create\"\npriority = 1\nscript = {{ command = {command}{env} }}\n"
        )
    };
    let src = [
        HEAD.to_owned(),
        script(1, "[\"/bin/cat\"]", ""),
        script(2, "[\"curl\", \"https://x\"]", ""),
        script(3, "[\"scripts/../../etc/passwd\"]", ""),
        script(4, "[\"scripts/plain.sh\"]", ""),
        script(5, "[\"scripts/missing.sh\"]", ""),
    ]
    .concat();
    let e = Config::parse(
        "h.toml",
        &src,
        &ParseOptions {
            scripts_dir: Some(dir.path()),
        },
    )
    .unwrap_err();
    let messages: Vec<&str> = e.diagnostics().iter().map(|d| d.message()).collect();
    assert_eq!(
        messages,
        [
            "`/bin/cat` is not a script of the bundle",
            "`curl` is not a script of the bundle",
            "`scripts/../../etc/passwd` is not a script of the bundle",
            "script `scripts/plain.sh` is not executable",
            "script `scripts/missing.sh` not found",
        ]
    );
    let src = [
        HEAD.to_owned(),
        script(1, "[\"scripts/a.sh\"]", ", env = { CRM_API_TOKEN = \"s3cr3t\", PATH = \"/tmp\", LD_PRELOAD = \"x.so\", MODE = \"audit\" }"),
        "[[handler]]\nid = 2\nname = \"h\"\nevent = \"clients.create\"\npriority = 1\nhttp = { url = \"https://a.example.com\", headers = { \"X-Webhook-Token\" = \"abc\", \"X-Tenant\" = \"acme\" } }\n".to_owned(),
    ]
    .concat();
    let messages: Vec<String> = errors(&src)
        .diagnostics()
        .iter()
        .map(|d| d.message().to_owned())
        .collect();
    assert_eq!(
        messages,
        [
            "literal secret in `CRM_API_TOKEN`",
            "`PATH` cannot be set for a script",
            "`LD_PRELOAD` cannot be set for a script",
            "literal secret in header `X-Webhook-Token`",
        ]
    );
}

#[test]
fn a_retry_schedule_longer_than_the_queue_keeps_messages_is_refused() {
    let src = format!(
        "{HEAD}[defaults]\nretry = {{ schedule = [{}] }}\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n",
        vec!["\"12h\""; 28].join(", ")
    );
    let e = errors(&src);
    assert_eq!(
        e.diagnostics()[0].message(),
        "the retry schedule is too long"
    );
    // 12 days fit, but not with 10 % jitter on top.
    let src = src.replace(
        &vec!["\"12h\""; 28].join(", "),
        &vec!["\"12h\""; 24].join(", "),
    );
    let e = errors(&src);
    assert_eq!(
        e.diagnostics()[0].message(),
        "the retry schedule is too long"
    );
    let src = src.replace(
        &vec!["\"12h\""; 24].join(", "),
        &vec!["\"12h\""; 23].join(", "),
    );
    assert!(Config::parse("t.toml", &src, &ParseOptions::default()).is_ok());
}

#[test]
fn a_duplicate_id_is_reported_even_when_that_handler_has_other_problems() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n\n[[handler]]\nid = 1\nname = \"b\"\nevent = \"clients.craete\"\npriority = 0\nhttp = {{ url = \"https://b.example.com\" }}\n"
    );
    let e = errors(&src);
    let messages: Vec<&str> = e.diagnostics().iter().map(|d| d.message()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("duplicate handler id 1")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("clients.craete")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("priority")),
        "{messages:?}"
    );
}

#[test]
fn many_problems_are_counted_and_the_first_fifty_shown() {
    let mut src = HEAD.to_owned();
    for id in 1..=2000 {
        src.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"h\"\nevent = \"clients.nope\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n"
        ));
    }
    let started = std::time::Instant::now();
    let e = errors(&src);
    let out = e.render(false);
    assert_eq!(e.len(), 2000);
    assert!(
        out.contains("… and 1950 more problems"),
        "{}",
        &out[out.len() - 300..]
    );
    assert!(out.ends_with("handlers.toml: 2000 errors found\n"));
    assert!(out.len() < 100_000, "{} bytes", out.len());
    // Not a timing test: a guard against the quadratic blow-up (seconds).
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_problem_far_along_a_huge_line_is_shown_as_an_excerpt_without_a_panic() {
    let name = "x".repeat(100_000);
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"h\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\", headers = {{ X-A = \"{name}\" }}, timeout = \"nope\" }}\n"
    );
    let out = rendered(&src);
    assert!(out.len() < 5_000, "{} bytes", out.len());
    assert!(out.contains("handlers.toml:7:"), "{out}");
    let huge_event = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"h\"\nevent = \"{}\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n",
        "y".repeat(1_000_000)
    );
    let out = rendered(&huge_event);
    assert!(out.len() < 5_000, "{} bytes", out.len());
}

#[test]
fn conditions_are_checked_with_their_place_in_the_file() {
    let h = |id: u32, when: &str| {
        format!(
            "[[handler]]\nid = {id}\nname = \"c{id}\"\nevent = \"clients.update\"\npriority = 1\nwhen = {when}\nhttp = {{ url = \"https://a.example.com\" }}\n"
        )
    };
    let src = format!(
        "{HEAD}{}{}{}{}{}",
        h(1, r#""data.balance < && data.x""#),
        h(2, r#""date.balance < 0""#),
        h(3, r#"'data.balance < 0 || data.balance == "none"'"#),
        h(4, r#""data.balance + 1""#),
        h(5, "3"),
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn a_valid_condition_is_kept_with_its_handler() {
    let src = format!(
        "{HEAD}[[handler]]\nid = 1\nname = \"c\"\nevent = \"clients.update\"\npriority = 1\nwhen = '''\ndata.balance < 0 &&\n  data.tariff in [\"pro\", \"enterprise\"]'''\nhttp = {{ url = \"https://a.example.com\" }}\n"
    );
    let c = Config::parse("handlers.toml", &src, &ParseOptions::default()).expect("valid");
    let when = c.handlers[0].when.as_ref().expect("a condition");
    assert!(when.source().contains("enterprise"));
    let back: Config =
        serde_json::from_str(&serde_json::to_string(&c).expect("json")).expect("back");
    assert_eq!(back, c);
}
