//! The pages' queries: filters parsed from the URL (what does not parse is
//! noted and ignored), links that keep them, and the `hooks …` command that
//! shows the same from the command line.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::commands::logs::parse_since;

/// Rows of a page of the execution log or of the events.
pub(super) const PAGE_ROWS: usize = 50;

/// A filter's value: `None` when empty; when it does not parse, a message.
pub(super) fn parse_opt<T: FromStr>(v: &str, name: &str, errors: &mut Vec<String>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    if v.is_empty() {
        return None;
    }
    match v.parse() {
        Ok(x) => Some(x),
        Err(e) => {
            errors.push(format!("The {name} filter `{v}` is ignored: {e}"));
            None
        }
    }
}

/// A time filter's value (`1h`, a date, …): `None` when empty; when it does
/// not parse, a message.
pub(super) fn parse_time(v: &str, name: &str, errors: &mut Vec<String>) -> Option<DateTime<Utc>> {
    if v.is_empty() {
        return None;
    }
    parse_since(v)
        .map_err(|e| errors.push(format!("The {name} filter is ignored: {e}")))
        .ok()
}

/// Percent-encodes a query value.
pub(super) fn q(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A query string of the non-empty pairs.
pub(super) fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", q(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A `hooks …` command with the flags whose values are set.
pub(super) fn command(base: &str, flags: &[(&str, &str)]) -> String {
    let mut out = base.to_owned();
    for (flag, v) in flags.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!(" {flag} {}", sh(v)));
    }
    out
}

/// A shell word, quoted when it needs to be.
pub(super) fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/=+,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        assert_eq!(sh("evt-1"), "evt-1");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(
            command(
                "hooks logs",
                &[("--handler", "2"), ("--outcome", ""), ("--since", "1 h")]
            ),
            "hooks logs --handler 2 --since '1 h'"
        );
    }
}
