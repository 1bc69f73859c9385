//! Handlers behind mutual TLS: a real TLS endpoint that requires a client
//! certificate of its CA, with certificates made here (rcgen). A handler
//! with its certificate is called; one without, one with an expired
//! certificate, or one that trusts another CA fails with a clear error in
//! its record; handlers of one TLS identity share a client and its
//! connections.

use std::sync::atomic::Ordering;

use hooks_core::chain::{CallRecord, Outcome};
use hooks_core::config::{Config, ParseOptions};
use hooks_core::targets::{
    HttpCaller, HttpOptions, NetworkPolicy, ScriptOptions, ScriptRunner, Secrets, Targets,
};
use hooks_tests::tls::{Ca, Endpoint};
use serde_json::json;

use crate::{after, event, scripts_dir};

/// The test's PKI: the endpoint's CA and certificate, the clients' CA.
struct Pki {
    servers: Ca,
    clients: Ca,
    server: (String, String),
}

fn pki() -> Pki {
    let servers = Ca::new("servers CA");
    let server = servers.issue("softswitch", false, false);
    Pki {
        servers,
        clients: Ca::new("clients CA"),
        server,
    }
}

/// Targets whose secret holds `values`, reaching loopback.
fn targets(values: &[(&str, &str)]) -> Targets {
    let secrets = Secrets::new(
        values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        "the test's secret",
    );
    let http = HttpCaller::new(HttpOptions {
        policy: NetworkPolicy::parse("127.0.0.0/8").unwrap(),
        secrets: secrets.clone(),
        ..HttpOptions::default()
    })
    .unwrap();
    Targets::new(http, ScriptRunner::new(ScriptOptions::new(scripts_dir())))
}

/// An after handler at `url` with `tls` (the inside of `tls = { … }`).
fn handler(id: u32, url: &str, tls: &str) -> String {
    format!(
        "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"clients.create\"\npriority = {id}\non_failure = \"skip\"\nhttp = {{ url = \"{url}\", timeout = \"5s\", tls = {{ {tls} }} }}\n"
    )
}

const MUTUAL: &str = r#"client_cert = { env = "C_CERT" }, client_key = { env = "C_KEY" }, ca = { env = "SERVER_CA" }"#;

/// Runs the after chain of `handlers` once; the record of each call.
async fn run(handlers: &str, t: &Targets) -> Vec<CallRecord> {
    let c = Config::parse(
        "test.toml",
        &format!("version = 1\n{handlers}"),
        &ParseOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    after(t, &c, &event(json!({"client_id": 1}))).await.handlers
}

#[tokio::test]
async fn a_handler_with_its_client_certificate_is_called_and_one_without_is_refused() {
    let p = pki();
    let endpoint = Endpoint::start(&p.server, &p.clients).await;
    let (cert, key) = p.clients.issue("hooks", true, false);
    let t = targets(&[
        ("C_CERT", &cert),
        ("C_KEY", &key),
        ("SERVER_CA", &p.servers.pem),
    ]);
    let records = run(
        &format!(
            "{}{}",
            handler(1, &endpoint.url, MUTUAL),
            handler(2, &endpoint.url, r#"ca = { env = "SERVER_CA" }"#)
        ),
        &t,
    )
    .await;
    assert_eq!(records[0].outcome, Outcome::Processed, "{:?}", records[0]);
    assert_eq!(records[0].status_code, Some(200));
    assert_eq!(records[1].outcome, Outcome::Failed, "{:?}", records[1]);
    let error = records[1].error.clone().unwrap_or_default();
    assert!(error.contains("Certificate"), "{error}");
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_client_certificate_is_a_clear_failure() {
    let p = pki();
    let endpoint = Endpoint::start(&p.server, &p.clients).await;
    let (cert, key) = p.clients.issue("hooks", true, true);
    let t = targets(&[
        ("C_CERT", &cert),
        ("C_KEY", &key),
        ("SERVER_CA", &p.servers.pem),
    ]);
    let records = run(&handler(1, &endpoint.url, MUTUAL), &t).await;
    assert_eq!(records[0].outcome, Outcome::Failed, "{:?}", records[0]);
    let error = records[0].error.clone().unwrap_or_default();
    assert!(error.contains("Expired"), "{error}");
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_endpoint_whose_certificate_is_of_another_ca_is_refused() {
    let p = pki();
    let endpoint = Endpoint::start(&p.server, &p.clients).await;
    let (cert, key) = p.clients.issue("hooks", true, false);
    let other = Ca::new("another CA");
    let t = targets(&[
        ("C_CERT", &cert),
        ("C_KEY", &key),
        ("SERVER_CA", &other.pem),
    ]);
    let records = run(&handler(1, &endpoint.url, MUTUAL), &t).await;
    assert_eq!(records[0].outcome, Outcome::Failed, "{:?}", records[0]);
    let error = records[0].error.clone().unwrap_or_default();
    assert!(error.contains("UnknownIssuer"), "{error}");
    // And with the public CAs alone (no `ca`), the private certificate is
    // not trusted either.
    let records = run(
        &handler(
            1,
            &endpoint.url,
            r#"client_cert = { env = "C_CERT" }, client_key = { env = "C_KEY" }"#,
        ),
        &t,
    )
    .await;
    assert_eq!(records[0].outcome, Outcome::Failed, "{:?}", records[0]);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_secret_that_is_not_a_certificate_fails_without_a_connection() {
    let p = pki();
    let endpoint = Endpoint::start(&p.server, &p.clients).await;
    let (_, key) = p.clients.issue("hooks", true, false);
    let t = targets(&[
        ("C_CERT", "not a certificate"),
        ("C_KEY", &key),
        ("SERVER_CA", &p.servers.pem),
    ]);
    let records = run(&handler(1, &endpoint.url, MUTUAL), &t).await;
    assert_eq!(
        (records[0].outcome, records[0].retryable),
        (Outcome::Failed, Some(false)),
        "{:?}",
        records[0]
    );
    let error = records[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("C_CERT") && error.contains("no certificate"),
        "{error}"
    );
    assert_eq!(endpoint.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn handlers_of_one_tls_identity_share_a_client_and_its_connections() {
    let p = pki();
    let endpoint = Endpoint::start(&p.server, &p.clients).await;
    let (cert, key) = p.clients.issue("hooks", true, false);
    let (cert2, key2) = p.clients.issue("hooks-2", true, false);
    let t = targets(&[
        ("C_CERT", &cert),
        ("C_KEY", &key),
        ("C2_CERT", &cert2),
        ("C2_KEY", &key2),
        ("SERVER_CA", &p.servers.pem),
    ]);
    let same = format!(
        "{}{}",
        handler(1, &endpoint.url, MUTUAL),
        handler(2, &endpoint.url, MUTUAL)
    );
    let records = run(&same, &t).await;
    assert!(
        records.iter().all(|r| r.outcome == Outcome::Processed),
        "{records:?}"
    );
    assert_eq!(
        (
            endpoint.handshakes.load(Ordering::SeqCst),
            endpoint.requests.load(Ordering::SeqCst)
        ),
        (1, 2),
        "one connection for both handlers"
    );
    let other = handler(
        3,
        &endpoint.url,
        r#"client_cert = { env = "C2_CERT" }, client_key = { env = "C2_KEY" }, ca = { env = "SERVER_CA" }"#,
    );
    let records = run(&other, &t).await;
    assert_eq!(records[0].outcome, Outcome::Processed, "{:?}", records[0]);
    assert_eq!(
        endpoint.handshakes.load(Ordering::SeqCst),
        2,
        "another identity, another connection"
    );
}

/// `hooks validate`'s view: what a `tls` table may hold.
#[test]
fn tls_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts/certs")).unwrap();
    let p = pki();
    std::fs::write(dir.path().join("scripts/certs/ca.pem"), &p.servers.pem).unwrap();
    std::fs::write(dir.path().join("scripts/certs/junk.pem"), "not PEM").unwrap();
    let parse = |tls: &str, url: &str| {
        Config::parse(
            "handlers.toml",
            &format!("version = 1\n{}", handler(1, url, tls)),
            &ParseOptions {
                scripts_dir: Some(dir.path()),
            },
        )
        .map_err(|e| format!("{e:?}"))
    };
    let https = "https://crm.example/hooks";
    let ok = parse(r#"ca = { file = "scripts/certs/ca.pem" }"#, https).unwrap();
    let hooks_core::config::Target::Http(h) = &ok.handlers[0].target else {
        panic!("not http")
    };
    assert_eq!(
        ok.handlers[0].target.summary(),
        "https://crm.example/hooks (private CA)"
    );
    assert!(h.tls.as_ref().unwrap().client.is_none());
    let mutual = parse(MUTUAL, https).unwrap();
    assert_eq!(
        mutual.handlers[0].target.summary(),
        "https://crm.example/hooks (mTLS, private CA)"
    );
    for (tls, url, expected) in [
        (MUTUAL, "http://127.0.0.1:9/x", "needs an https:// URL"),
        (
            r#"client_cert = { env = "C_CERT" }"#,
            https,
            "`client_cert` without `client_key`",
        ),
        (
            r#"client_key = { env = "C_KEY" }"#,
            https,
            "`client_key` without `client_cert`",
        ),
        (
            r#"client_cert = "-----BEGIN CERTIFICATE-----", client_key = { env = "C_KEY" }"#,
            https,
            "literal secret in `client_cert`",
        ),
        (
            r#"ca = "-----BEGIN CERTIFICATE-----""#,
            https,
            "`ca` must name where",
        ),
        (
            r#"ca = { file = "scripts/certs/none.pem" }"#,
            https,
            "not found",
        ),
        (
            r#"ca = { file = "scripts/certs/junk.pem" }"#,
            https,
            "holds no certificate",
        ),
        (
            r#"ca = { file = "../ca.pem" }"#,
            https,
            "is not a file of the bundle",
        ),
        (
            r#"ca = { file = "/etc/ssl/ca.pem" }"#,
            https,
            "is not a file of the bundle",
        ),
        (
            r#"ca = { file = "certs/ca.pem" }"#,
            https,
            "is not in the scripts folder",
        ),
        (
            r#"client_cert = { env = "AWS_SECRET_ACCESS_KEY" }, client_key = { env = "C_KEY" }"#,
            https,
            "not a handler's secret",
        ),
        (r#"verify = false"#, https, "unknown key `verify`"),
        (r#""#, https, "`tls` sets nothing"),
    ] {
        let e = parse(tls, url).expect_err(tls);
        assert!(
            e.contains(expected),
            "`{tls}`: expected {expected:?} in {e}"
        );
    }
}
