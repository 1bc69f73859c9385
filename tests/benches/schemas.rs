//! What checking an event's data against its type's JSON Schema adds to
//! ingest's reading of a request: the repository's schema of
//! clients.create, an event of about 1 KB, read by `parse_events` alone and
//! then checked too, in the same run. Prints figures; asserts nothing.
//! Run with `make bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::Utc;
use cpu_time::ThreadTime;
use hooks_core::config::Config;
use hooks_core::config::schemas::Compiled;
use hooks_core::ingest::{parse_events, schema_problems};
use serde_json::json;

const EVENTS: usize = 20_000;
const ROUNDS: usize = 5;

fn main() {
    let root = hooks_tests::root();
    let config = Config::load(&root.join("handlers.toml"), None).unwrap();
    let started = Instant::now();
    let compiled = Compiled::new(&config.schemas).unwrap();
    let compile = started.elapsed();
    let body = json!({
        "id": "evt-1", "event": "clients.create",
        "data": {
            "client_id": 42, "name": "ACME Telecom Ltd", "email": "billing@acme.example",
            "phone": "+49 30 1234567", "status": "active", "tariff": "business-2026",
            "balance": "120.50", "currency": "EUR", "credit_score": 720,
            "custom_fields": {"vat_id": "DE123456789", "segment": "enterprise", "region": "eu-central",
                "note": "a customer since 2019; billing contact is the finance team, invoices by email"},
            "accounts": [{"id": 1, "login": "acme-1"}, {"id": 2, "login": "acme-2"}, {"id": 3, "login": "acme-3"}],
            "address": {"street": "Friedrichstraße 1", "city": "Berlin", "zip": "10117", "country": "DE"}
        }
    })
    .to_string();
    let body = body.as_bytes();
    let now = Utc::now();
    let parse = || parse_events(body, now, || "x".into()).unwrap();
    assert!(schema_problems(&compiled, &parse()).is_empty());
    let (mut alone, mut checked) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = ThreadTime::now();
        for _ in 0..EVENTS {
            std::hint::black_box(parse());
        }
        alone.push(t.elapsed());
        let t = ThreadTime::now();
        for _ in 0..EVENTS {
            let events = parse();
            std::hint::black_box(schema_problems(&compiled, &events));
        }
        checked.push(t.elapsed());
    }
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6 / EVENTS as f64
    };
    let (a, c) = (median(alone), median(checked));
    println!(
        "ingest, one event of {} bytes (clients.create, the repository's schema); CPU per event, median of {ROUNDS} rounds of {EVENTS}",
        body.len()
    );
    println!("  parse_events alone        : {a:>6.2} us");
    println!("  parse_events + its schema : {c:>6.2} us");
    println!(
        "  added by the schema: {:.2} us per event (target <= 20 us: {}); ratio {:.2}",
        c - a,
        if c - a <= 20.0 { "met" } else { "NOT met" },
        c / a
    );
    println!(
        "  compiling the revision's {} schemas, once per revision: {:.1} ms",
        config.schemas.by_event.len(),
        compile.as_secs_f64() * 1e3
    );
}
