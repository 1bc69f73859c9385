//! What the parse carries from value to value, and its readers of one
//! value each (a string, an integer, a table, a duration, one of a few
//! names, an optional key): each reports what is wrong with the value, in
//! terms of its key, and gives `None`.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::diagnostics::Diag;
use crate::events::closest;

/// A value of the file, with where it is.
pub(super) type Val<'i> = Spanned<DeValue<'i>>;

/// The parse's state: the problems found so far, and what the checks need.
pub(super) struct Cx<'o> {
    pub(super) diags: Vec<Diag>,
    /// When set, script commands with a relative path must exist below it.
    pub(super) scripts_dir: Option<&'o Path>,
    /// The file, to place a problem inside a string value (a `when` condition).
    pub(super) src: &'o str,
    /// The event types' schemas (`[schemas]`), once read: conditions are
    /// checked against them.
    pub(super) event_schemas: std::collections::BTreeMap<crate::events::Event, serde_json::Value>,
}

/// How a diagnostic names the type of a value that is not the one expected.
pub(super) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The allowed names, as a diagnostic lists them: "`a`, `b`".
pub(super) fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cx<'_> {
    /// Records a problem; the parse goes on, to report every problem in one run.
    pub(super) fn push(&mut self, d: Diag) {
        self.diags.push(d);
    }

    /// Reports every key of `table` that is not in `allowed`, with the nearest allowed key.
    pub(super) fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let help = match closest(name, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? {what} accepts {}", one_of(allowed)),
                None => format!("{what} accepts {}", one_of(allowed)),
            };
            self.push(
                Diag::new(key.span(), format!("unknown key `{name}` in {what}"))
                    .label("not a known key")
                    .help(help),
            );
        }
    }

    /// `v` as a string, or a problem naming `key` when it is another type.
    pub(super) fn string<'a>(&mut self, key: &str, v: &'a Val<'_>) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a string"))
                        .label(format!("this is {}", type_name(other))),
                );
                None
            }
        }
    }

    /// `v` as an integer that fits an `i64`, or a problem naming `key`.
    pub(super) fn integer(&mut self, key: &str, v: &Val<'_>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.push(Diag::new(v.span(), format!("`{key}` is out of range")));
                    None
                }
            },
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be an integer"))
                        .label(format!("this is {}", type_name(other))),
                );
                None
            }
        }
    }

    /// `v` as a table, or a problem naming `key` with `help` on how to write it.
    pub(super) fn table<'a, 'i>(
        &mut self,
        key: &str,
        v: &'a Val<'i>,
        help: &str,
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a table"))
                        .label(format!("this is {}", type_name(other)))
                        .help(help),
                );
                None
            }
        }
    }

    /// `v` as a duration string ("5s"), longer than zero and at most `max`.
    pub(super) fn duration(&mut self, key: &str, v: &Val<'_>, max: Duration) -> Option<Duration> {
        const HOW: &str =
            "write a duration as a string with a unit, e.g. \"500ms\", \"5s\", \"2m\"";
        let DeValue::String(s) = v.get_ref() else {
            self.push(
                Diag::new(v.span(), format!("`{key}` must be a duration string"))
                    .label(format!("this is {}", type_name(v.get_ref())))
                    .help(HOW),
            );
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be longer than zero"))
                        .label("zero")
                        .help(HOW),
                );
                None
            }
            Ok(d) if d > max => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` is too long"))
                        .label(format!("longer than {}", humantime::format_duration(max)))
                        .help(format!(
                            "the longest allowed here is {}",
                            humantime::format_duration(max)
                        )),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` is not a valid duration: {e}"))
                        .label("not a duration")
                        .help(HOW),
                );
                None
            }
        }
    }

    /// `v` as one of `names`, read by `from`; an unknown name is reported
    /// with the closest one.
    pub(super) fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: &Val<'_>,
        names: &[&str],
        from: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(key, v)?;
        if let Some(t) = from(s) {
            return Some(t);
        }
        let help = match closest(s, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? allowed: {}", one_of(names)),
            None => format!("allowed: {}", one_of(names)),
        };
        self.push(
            Diag::new(v.span(), format!("invalid {key} `{s}`"))
                .label(format!("not a valid {key}"))
                .help(help),
        );
        None
    }

    /// Reads an optional key: `Ok(None)` when absent, `Err(())` when present
    /// but invalid (the problem is already reported).
    pub(super) fn optional<'a, 'i, T>(
        &mut self,
        t: &'a DeTable<'i>,
        key: &str,
        read: impl FnOnce(&mut Self, &'a Val<'i>) -> Option<T>,
    ) -> Result<Option<T>, ()> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => read(self, v).map(Some).ok_or(()),
        }
    }
}
