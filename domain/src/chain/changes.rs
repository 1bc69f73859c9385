//! What a modifying handler changed in the data, field by field: kept in its
//! call's record, so that the execution log shows the data before and after
//! each handler without storing the whole data at every step.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::Data;
use crate::text::cut;

/// The most changes kept per call; the rest are counted in the last entry.
pub const MAX_CHANGES: usize = 32;

/// The longest value kept (as JSON) on either side of a change.
pub const VALUE_BYTES: usize = 256;

/// One changed field: its path (`address.city`, `lines[2]` is not split:
/// arrays are compared whole) and its value before and after, as JSON cut to
/// [`VALUE_BYTES`]. `None` on a side: the field was absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The fields that differ between `before` and `after`, in path order; at
/// most [`MAX_CHANGES`], the last one then saying how many more there were.
pub fn changes(before: &Data, after: &Data) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    if out.len() > MAX_CHANGES {
        let more = out.len() - (MAX_CHANGES - 1);
        out.truncate(MAX_CHANGES - 1);
        out.push(FieldChange {
            path: format!("… and {more} more fields"),
            before: None,
            after: None,
        });
    }
    out
}

fn walk(prefix: &str, before: &Data, after: &Data, out: &mut Vec<FieldChange>) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (before.get(k), after.get(k)) {
            (Some(Value::Object(b)), Some(Value::Object(a))) => walk(&path, b, a, out),
            (b, a) if b != a => out.push(FieldChange {
                path,
                before: b.map(show),
                after: a.map(show),
            }),
            _ => {}
        }
    }
}

fn show(v: &Value) -> String {
    cut(v.to_string(), VALUE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        match v {
            Value::Object(m) => m,
            _ => Data::new(),
        }
    }

    #[test]
    fn nested_fields_are_named_by_path_and_arrays_compared_whole() {
        let before =
            data(json!({"a": 1, "addr": {"city": "Riga", "zip": "1"}, "l": [1, 2], "gone": true}));
        let after =
            data(json!({"a": 1, "addr": {"city": "Tallinn", "zip": "1"}, "l": [1, 3], "new": "x"}));
        let got = changes(&before, &after);
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["addr.city", "gone", "l", "new"]);
        assert_eq!(got[0].before.as_deref(), Some("\"Riga\""));
        assert_eq!(got[0].after.as_deref(), Some("\"Tallinn\""));
        assert_eq!(got[1].after, None);
        assert_eq!(got[3].before, None);
    }

    #[test]
    fn many_changes_are_capped_and_counted() {
        let before = Data::new();
        let after = data(Value::Object(
            (0..100).map(|i| (format!("f{i:03}"), json!(i))).collect(),
        ));
        let got = changes(&before, &after);
        assert_eq!(got.len(), MAX_CHANGES);
        assert_eq!(got[MAX_CHANGES - 1].path, "… and 69 more fields");
    }

    #[test]
    fn long_values_are_cut() {
        let after = data(json!({"big": "x".repeat(5000)}));
        let got = changes(&Data::new(), &after);
        assert!(
            got[0]
                .after
                .as_ref()
                .is_some_and(|v| v.len() <= VALUE_BYTES + 4)
        );
    }
}
