//! Fuzz targets that run on stable Rust: mutations of seed inputs, each
//! checked against what the product promises for any input (no panic, a
//! clear error, what is accepted round-trips and stays within the limits).
//! `make fuzz` runs each for a while (`tests/bin/fuzz.rs`); what a run finds
//! is saved under `target/fuzz-findings/` and becomes a regression input in
//! `tests/fixtures/fuzz/`, which the test suite replays.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use chrono::Utc;
use hooks_core::config::{Config, ParseOptions};
use hooks_core::ingest::parse_events;
use hooks_core::protocol::{MAX_DATA_BYTES, MAX_DATA_DEPTH, data_depth, encoded_len, read_answer};
use hooks_core::queue::message_body;
use hooks_core::records::{EventRecord, QueuedEvent};

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An ingest request body → events → queue message → event record.
    Ingest,
    /// A handlers.toml → config, or diagnostics that render.
    HandlersToml,
    /// A handler's answer → what the chain keeps of it.
    Answer,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Ingest, Target::HandlersToml, Target::Answer];

    pub fn name(self) -> &'static str {
        match self {
            Target::Ingest => "ingest",
            Target::HandlersToml => "handlers_toml",
            Target::Answer => "answer",
        }
    }

    /// Inputs to start mutating from.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let deep = format!(
            "{{\"event\":\"clients.update\",\"data\":{{\"x\":{}1{}}}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        match self {
            Target::Ingest => vec![
                br#"{"id":"e-1","event":"clients.create","occurred_at":"2026-11-26T10:00:00.123Z","key":"client:42","data":{"client_id":42,"name":"A\u00e9","credit":1.5e-7,"tags":["a",{"b":null}]}}"#.to_vec(),
                br#"[{"event":"accounts.create","data":{"account_id":"A-1"}},{"id":"x.y:z@w=1","event":"subscriptions.renew","data":{"client_id":"7","subscription_id":3}}]"#.to_vec(),
                deep.into_bytes(),
            ],
            Target::HandlersToml => vec![
                include_bytes!("../../handlers.toml").to_vec(),
                b"version = 1\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.*\"\npriority = 1\nhttp = { url = \"https://a.example.com\", secret = { env = \"A_SECRET\" } }\n".to_vec(),
            ],
            Target::Answer => vec![
                br#"{"data":{"client_id":42,"softswitch_id":"sw-42"}}"#.to_vec(),
                br#"{"decision":"forbid","reason":"credit score too low"}"#.to_vec(),
                br#"{"id":"e","event":"clients.create","data":{"a":[1,2,{"b":"c"}]},"decision":"allow"}"#.to_vec(),
            ],
        }
    }

    /// Checks one input; `Err` says which promise it broke.
    pub fn check(self, input: &[u8]) -> Result<(), String> {
        match self {
            Target::Ingest => check_ingest(input),
            Target::HandlersToml => check_toml(input),
            Target::Answer => check_answer(input),
        }
    }
}

fn check_ingest(input: &[u8]) -> Result<(), String> {
    let Ok(events) = parse_events(input, Utc::now(), || "generated".into()) else {
        return Ok(()); // a clear error is a fine answer
    };
    for q in events {
        within_limits(&q.event.data)?;
        let message = message_body(&q).map_err(|e| format!("no message body: {e}"))?;
        let back: QueuedEvent =
            serde_json::from_str(&message).map_err(|e| format!("message unreadable: {e}"))?;
        if back != q {
            return Err("the queue message changed the event".into());
        }
        let record = EventRecord::accepted(&back, Utc::now());
        let doc = serde_json::to_string(&record).map_err(|e| format!("record: {e}"))?;
        let stored: EventRecord =
            serde_json::from_str(&doc).map_err(|e| format!("record unreadable: {e}"))?;
        if stored != record {
            return Err("the record changed the event".into());
        }
    }
    Ok(())
}

fn check_toml(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    if let Err(e) = Config::parse("handlers.toml", &text, &ParseOptions::default()) {
        let out = e.render(false);
        if out.len() > 200_000 {
            return Err(format!("diagnostics of {} bytes", out.len()));
        }
        if e.is_empty() {
            return Err("refused without a diagnostic".into());
        }
    }
    Ok(())
}

fn check_answer(input: &[u8]) -> Result<(), String> {
    if let Ok(answer) = read_answer(input, false)
        && let Some(data) = answer.data
    {
        within_limits(&data)?;
        let text = serde_json::to_string(&data).map_err(|e| e.to_string())?;
        let back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{\"data\":{text}}}"))
                .map_err(|e| format!("kept data unreadable: {e}"))?;
        if back.get("data") != Some(&serde_json::Value::Object(data)) {
            return Err("kept data changed".into());
        }
    }
    Ok(())
}

fn within_limits(data: &hooks_core::protocol::Data) -> Result<(), String> {
    if data_depth(data) > MAX_DATA_DEPTH {
        return Err(format!("data nests {} levels", data_depth(data)));
    }
    if encoded_len(data) > MAX_DATA_BYTES {
        return Err(format!("data is {} bytes", encoded_len(data)));
    }
    Ok(())
}

/// A small, fast generator (xorshift), seeded for reproducible runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that break parsers: deep nesting, odd characters, big numbers.
const DICTIONARY: &[&[u8]] = &[
    b"[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":",
    b"\\u0000",
    b"\\ufffe",
    b"\\ud800",
    b"\xef\xbf\xbe",
    b"1e999",
    b"-0.0",
    b"18446744073709551616",
    b"\"",
    b"\\",
    b"\n",
    b"\t",
    b"=",
    b"[[handler]]\n",
    b"id = 1\n",
    b"event = \"clients.*\"\n",
    b"{ env = \"X\" }",
    b"\"decision\":\"forbid\"",
    b"\"data\":",
    b"null",
    b"\xff\xfe",
    b"\xf0\x9f\x98\x80",
    b"\"\xe2\x80\xae\"",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => {
                let piece = DICTIONARY[rng.below(DICTIONARY.len())];
                v.splice(at..at, piece.iter().copied());
            }
            4 if !v.is_empty() => {
                let from = rng.below(v.len());
                let to = (from + rng.below(64)).min(v.len());
                let chunk = v[from..to].to_vec();
                v.splice(at..at, chunk);
            }
            _ => {
                let n = rng.below(200);
                v.splice(at..at, std::iter::repeat_n(b'[', n));
            }
        }
    }
    v
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    /// Inputs that broke a promise (or panicked), with why.
    pub findings: Vec<(Vec<u8>, String)>,
}

/// Runs `target` on mutated inputs for `time`.
pub fn run(target: Target, time: Duration, seed: u64) -> Report {
    let seeds = target.seeds();
    let mut rng = Rng(seed | 1);
    let mut report = Report::default();
    let started = Instant::now();
    while started.elapsed() < time {
        let pick = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[pick]);
        report.executions += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| target.check(&input))).unwrap_or_else(|p| {
            Err(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            ))
        });
        if let Err(why) = outcome
            && report.findings.len() < 20
        {
            report.findings.push((input, why));
        }
    }
    report
}
