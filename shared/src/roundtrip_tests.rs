//! What ingest accepts must be processable by every later step: each
//! accepted body round-trips, unchanged, through the queue message, the
//! event's record (as DynamoDB stores it) and the handler request, and a
//! handler answer that is accepted fits the same limits.

use chrono::Utc;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::ingest::{BodyError, parse_events};
use crate::protocol::{MAX_DATA_DEPTH, data_depth, read_answer};
use crate::queue::message_body;
use crate::records::{EventRecord, QueuedEvent};
use crate::store::events::{record_from_item, record_item};

/// Any JSON value, up to `depth` levels, with the characters that are
/// trouble somewhere (U+FFFE/U+FFFF for SQS, NUL, quotes, astral planes).
fn value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "(\\PC|[\u{fffe}\u{ffff}\u{0}\"\\\\\u{1F600}]){0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_\u{fffe}]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,10}", value(6), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

/// An object nested `levels` deep: `{"x": {"x": … {}}}`.
fn nested(levels: usize) -> Value {
    let mut v = json!({});
    for _ in 1..levels {
        v = json!({ "x": v });
    }
    v
}

fn accept(data: &Value) -> Result<QueuedEvent, BodyError> {
    let body = json!({"id": "e-1", "event": "clients.update", "data": data}).to_string();
    parse_events(body.as_bytes(), Utc::now(), || "gen".into()).map(|mut e| e.remove(0))
}

/// Through the queue message, the stored record and the handler request.
fn round_trip(q: &QueuedEvent) {
    let message = message_body(q).unwrap();
    let back: QueuedEvent = serde_json::from_str(&message).unwrap();
    assert_eq!(&back, q, "queue message");
    let record = EventRecord::accepted(&back, Utc::now());
    let item = record_item(&record, std::time::Duration::from_secs(60)).unwrap();
    let mut stored = record_from_item(&item).unwrap();
    assert_eq!(
        stored.version,
        record.version + 1,
        "the item is the next version"
    );
    stored.version = record.version;
    assert_eq!(stored, record, "event record");
    assert_eq!(stored.event.event.data, q.event.data);
    let request =
        serde_json::to_string(&json!({"id": q.event.id, "data": stored.progress.data})).unwrap();
    let read: Value = serde_json::from_str(&request).unwrap();
    assert_eq!(
        read["data"],
        Value::Object(q.event.data.clone()),
        "handler request"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_accepted_body_round_trips_unchanged(data in data()) {
        if let Ok(q) = accept(&Value::Object(data.clone())) {
            prop_assert_eq!(&q.event.data, &data);
            round_trip(&q);
        }
    }

    #[test]
    fn an_accepted_handler_answer_round_trips_too(data in data()) {
        let body = json!({"data": data}).to_string();
        if let Ok(answer) = read_answer(body.as_bytes(), false) {
            let mut q = accept(&json!({})).unwrap();
            q.event.data = answer.data.unwrap_or_default();
            round_trip(&q);
        }
    }
}

#[test]
fn the_deepest_accepted_data_round_trips_and_one_level_more_is_refused() {
    let deepest = nested(MAX_DATA_DEPTH);
    let q = accept(&deepest).unwrap();
    assert_eq!(data_depth(&q.event.data), MAX_DATA_DEPTH);
    round_trip(&q);
    let Err(BodyError::Invalid(errors)) = accept(&nested(MAX_DATA_DEPTH + 1)) else {
        panic!("accepted data nested past the limit")
    };
    assert!(
        errors[0].message.contains("nests 33 levels"),
        "{:?}",
        errors[0]
    );
    // The body of the report: 125 levels in a field.
    let mut deep = json!([]);
    for _ in 0..124 {
        deep = json!([deep]);
    }
    assert!(accept(&json!({"client_id": 903, "x": deep})).is_err());
    // A handler may not return it either: a permanent protocol failure.
    let answer = json!({"data": nested(MAX_DATA_DEPTH + 1)}).to_string();
    assert!(read_answer(answer.as_bytes(), false).is_err());
    let answer = json!({"data": nested(MAX_DATA_DEPTH)}).to_string();
    assert!(read_answer(answer.as_bytes(), false).is_ok());
}
