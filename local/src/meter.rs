//! What the AWS calls that pass the gateway would be billed, counted as AWS
//! counts them. The emulator does not compute capacity (it answers a fixed
//! `ConsumedCapacity`), so the units are computed here from the items'
//! sizes, by DynamoDB's published rules:
//! - an item's size is the UTF-8 length of its attribute names plus their
//!   values (strings: UTF-8 bytes; numbers: about one byte per two
//!   significant digits, plus one; binary: its length; booleans and null:
//!   one byte; lists and maps: 3 bytes plus one per element, plus their
//!   elements);
//! - a write uses one write request unit per started KiB of the larger of the
//!   item before and after it (a failed condition too), twice that in a
//!   transaction; each global secondary index the item is or was in costs a
//!   write of its projected entry, two when the index key changed;
//! - a read uses one read request unit per started 4 KiB, half for an
//!   eventually consistent read; a query or scan page adds up the items it
//!   returns before rounding (items it evaluates and filters out are not
//!   seen here: our requests use no filter expressions).
//! - SQS bills one request per call and per started 64 KiB of the messages
//!   it carries; Secrets Manager one call per call.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// The units one caller used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Units {
    /// DynamoDB read request units.
    pub read_units: f64,
    /// DynamoDB write request units, table and indexes.
    pub write_units: f64,
    /// Of `write_units`, those of global secondary indexes.
    pub index_write_units: f64,
    /// Billable SQS requests (receives that returned nothing apart).
    pub sqs_requests: u64,
    /// Receives that returned nothing: on AWS the event source mapping's
    /// idle long polls, a cost per hour rather than per event.
    pub empty_receives: u64,
    /// Secrets Manager API calls.
    pub secrets_calls: u64,
    /// Calls by action (`dynamodb:PutItem`), for the breakdown.
    pub calls: BTreeMap<String, u64>,
    /// Write units by table (and `table/index`).
    pub writes_by_table: BTreeMap<String, f64>,
}

impl Units {
    pub fn add(&mut self, other: &Units) {
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.index_write_units += other.index_write_units;
        self.sqs_requests += other.sqs_requests;
        self.empty_receives += other.empty_receives;
        self.secrets_calls += other.secrets_calls;
        for (k, v) in &other.calls {
            *self.calls.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.writes_by_table {
            *self.writes_by_table.entry(k.clone()).or_default() += v;
        }
    }
}

/// A table's keys and indexes, as `DescribeTable` tells them.
#[derive(Debug, Clone, Default)]
pub struct TableShape {
    pub keys: Vec<String>,
    pub indexes: Vec<IndexShape>,
}

#[derive(Debug, Clone)]
pub struct IndexShape {
    pub name: String,
    pub keys: Vec<String>,
    pub projection: Projection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

impl TableShape {
    /// From a `DescribeTable` answer.
    pub fn from_description(v: &Value) -> TableShape {
        let keys = |ks: &Value| -> Vec<String> {
            ks.as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                .collect()
        };
        let t = &v["Table"];
        TableShape {
            keys: keys(&t["KeySchema"]),
            indexes: t["GlobalSecondaryIndexes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|ix| IndexShape {
                    name: ix["IndexName"].as_str().unwrap_or("").to_owned(),
                    keys: keys(&ix["KeySchema"]),
                    projection: match ix["Projection"]["ProjectionType"].as_str() {
                        Some("KEYS_ONLY") => Projection::KeysOnly,
                        Some("INCLUDE") => Projection::Include(
                            ix["Projection"]["NonKeyAttributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|a| a.as_str().map(str::to_owned))
                                .collect(),
                        ),
                        _ => Projection::All,
                    },
                })
                .collect(),
        }
    }

    /// The item's key attributes (to read it back).
    pub fn key_of(&self, item: &Value) -> Value {
        let mut key = serde_json::Map::new();
        for k in &self.keys {
            if let Some(v) = item.get(k) {
                key.insert(k.clone(), v.clone());
            }
        }
        Value::Object(key)
    }
}

/// The size of a DynamoDB item (in its JSON wire form), in bytes.
pub fn item_size(item: &Value) -> u64 {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| name.len() as u64 + value_size(v))
        .sum()
}

fn value_size(v: &Value) -> u64 {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, |s| s.len() as u64),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        // Base64 on the wire; DynamoDB counts the bytes.
        "B" => inner.as_str().map_or(0, |s| {
            (s.len() as u64 * 3 / 4)
                .saturating_sub(s.bytes().rev().take_while(|b| *b == b'=').count() as u64)
        }),
        "BOOL" | "NULL" => 1,
        "SS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().map_or(0, |s| s.len() as u64))
            .sum(),
        "NS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| number_size(s.as_str().unwrap_or("0")))
            .sum(),
        "L" => {
            let items = inner.as_array().map_or(&[][..], |a| a.as_slice());
            3 + items.iter().map(|e| 1 + value_size(e)).sum::<u64>()
        }
        "M" => {
            3 + inner
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// A number: one byte per two significant digits, plus one.
fn number_size(n: &str) -> u64 {
    let digits: String = n
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    (significant.len() as u64).div_ceil(2) + 1
}

/// Write units for an item of `size` bytes (at least one).
pub fn write_units(size: u64) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read units for `size` bytes read in one operation.
pub fn read_units(size: u64, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// The entry of `item` in an index, if the item is in it.
fn index_entry(table: &TableShape, ix: &IndexShape, item: &Value) -> Option<Value> {
    let o = item.as_object()?;
    if !ix.keys.iter().all(|k| o.contains_key(k)) {
        return None;
    }
    Some(match &ix.projection {
        Projection::All => item.clone(),
        other => {
            let mut keep: Vec<&String> = table.keys.iter().chain(&ix.keys).collect();
            if let Projection::Include(extra) = other {
                keep.extend(extra);
            }
            Value::Object(
                o.iter()
                    .filter(|(k, _)| keep.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
    })
}

/// The write units of replacing `before` by `after` (either may be absent)
/// in `table`: the table's and each index's, by name.
pub fn write_cost(
    table_name: &str,
    table: &TableShape,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Vec<(String, f64)> {
    let size = before.map_or(0, item_size).max(after.map_or(0, item_size));
    let mut out = vec![(table_name.to_owned(), write_units(size))];
    for ix in &table.indexes {
        let old = before.and_then(|b| index_entry(table, ix, b));
        let new = after.and_then(|a| index_entry(table, ix, a));
        let key_of = |e: &Value| -> Vec<Value> { ix.keys.iter().map(|k| e[k].clone()).collect() };
        let units = match (&old, &new) {
            (None, None) => 0.0,
            (Some(o), None) => write_units(item_size(o)),
            (None, Some(n)) => write_units(item_size(n)),
            (Some(o), Some(n)) if key_of(o) != key_of(n) => {
                write_units(item_size(o)) + write_units(item_size(n))
            }
            (Some(o), Some(n)) if o == n => 0.0,
            (Some(_), Some(n)) => write_units(item_size(n)),
        };
        if units > 0.0 {
            out.push((format!("{table_name}/{}", ix.name), units));
        }
    }
    out
}

/// Billable SQS requests of one call: one per started 64 KiB of the
/// messages it carries, at least one.
pub fn sqs_requests(request: &Value, response: &Value) -> u64 {
    let mut bytes = 0u64;
    for m in request["Entries"].as_array().into_iter().flatten() {
        bytes += m["MessageBody"].as_str().map_or(0, |b| b.len() as u64);
    }
    bytes += request["MessageBody"]
        .as_str()
        .map_or(0, |b| b.len() as u64);
    for m in response["Messages"].as_array().into_iter().flatten() {
        bytes += m["Body"].as_str().map_or(0, |b| b.len() as u64);
    }
    bytes.div_ceil(64 * 1024).max(1)
}

/// Shapes of the tables seen so far, by name.
pub type Shapes = HashMap<String, TableShape>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        // "id" (2) + "abc" (3); "n" (1) + 12345 (3 digits pairs + 1 = 4).
        assert_eq!(item_size(&json!({"id": {"S": "abc"}})), 5);
        assert_eq!(item_size(&json!({"n": {"N": "12345"}})), 1 + 4);
        assert_eq!(number_size("100"), 2);
        assert_eq!(number_size("-0.0012"), 2);
        // A list of two strings: 3 + (1 + 1) + (1 + 2).
        assert_eq!(
            item_size(&json!({"l": {"L": [{"S": "a"}, {"S": "bb"}]}})),
            1 + 8
        );
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
        assert_eq!(read_units(10, true), 1.0);
    }

    #[test]
    fn index_writes_follow_the_item_in_and_out_of_the_index() {
        let table = TableShape {
            keys: vec!["id".into()],
            indexes: vec![
                IndexShape {
                    name: "by_status".into(),
                    keys: vec!["status".into()],
                    projection: Projection::KeysOnly,
                },
                IndexShape {
                    name: "by_day".into(),
                    keys: vec!["day".into()],
                    projection: Projection::All,
                },
            ],
        };
        let a = json!({"id": {"S": "e1"}, "status": {"S": "running"}, "doc": {"S": "x"}});
        let b = json!({"id": {"S": "e1"}, "status": {"S": "done"}, "doc": {"S": "y"}});
        // New: the table and by_status (not in by_day: no `day`).
        assert_eq!(
            write_cost("t", &table, None, Some(&a)),
            [("t".to_owned(), 1.0), ("t/by_status".to_owned(), 1.0)]
        );
        // The index key changed: a delete and a put there.
        assert_eq!(
            write_cost("t", &table, Some(&a), Some(&b)),
            [("t".to_owned(), 1.0), ("t/by_status".to_owned(), 2.0)]
        );
        // Only a non-projected attribute changed: no index write.
        let c = json!({"id": {"S": "e1"}, "status": {"S": "running"}, "doc": {"S": "z"}});
        assert_eq!(
            write_cost("t", &table, Some(&a), Some(&c)),
            [("t".to_owned(), 1.0)]
        );
    }

    #[test]
    fn sqs_bills_per_64_kib() {
        let small = json!({"Entries": [{"MessageBody": "x"}]});
        assert_eq!(sqs_requests(&small, &json!({})), 1);
        let big = json!({"MessageBody": "x".repeat(64 * 1024 + 1)});
        assert_eq!(sqs_requests(&big, &json!({})), 2);
        assert_eq!(sqs_requests(&json!({}), &json!({})), 1);
    }
}
