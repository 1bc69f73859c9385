//! Finding a handler's definition in the text of a handlers file, through
//! the TOML parser's spans (never by searching for `id = N`, which can sit
//! inside another handler's multi-line string).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::HandlerId;

/// The `[[handler]]` block of handler `id` in `src`, as written: from its
/// header line to the end of the line of its last key or value (comments
/// and blank lines after it belong to the next block). `None` if `src` does
/// not parse or has no such handler.
pub fn handler_source(src: &str, id: HandlerId) -> Option<&str> {
    let doc = DeTable::parse(src).ok()?;
    let DeValue::Array(items) = doc.get_ref().get("handler")?.get_ref() else {
        return None;
    };
    let item = items.iter().find(|item| {
        let DeValue::Table(t) = item.get_ref() else {
            return false;
        };
        t.get("id")
            .and_then(|v| v.get_ref().as_integer())
            .and_then(|i| u32::from_str_radix(i.as_str(), i.radix()).ok())
            == Some(id)
    })?;
    let DeValue::Table(t) = item.get_ref() else {
        return None;
    };
    let mut bounds: Option<Range<usize>> = None;
    for (k, v) in t.iter() {
        widen(&mut bounds, k.span());
        value_bounds(v, &mut bounds);
    }
    let Range { start, end } = bounds?;
    // The header is the last line before the first key that opens a table
    // (between the two there is only whitespace and comments).
    let before = src.get(..start)?;
    let header = before
        .rmatch_indices('\n')
        .map(|(i, _)| i + 1)
        .chain([0])
        .find(|&i| before[i..].trim_start().starts_with("[["))?;
    let end = src.get(end..)?.find('\n').map_or(src.len(), |i| end + i);
    src.get(header..end).map(str::trim_end)
}

fn widen(bounds: &mut Option<Range<usize>>, span: Range<usize>) {
    if span.is_empty() {
        return;
    }
    *bounds = Some(match bounds.take() {
        None => span,
        Some(b) => b.start.min(span.start)..b.end.max(span.end),
    });
}

/// Every key's and value's span inside `v`, nested tables and arrays too.
fn value_bounds(v: &Spanned<DeValue<'_>>, bounds: &mut Option<Range<usize>>) {
    widen(bounds, v.span());
    match v.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                widen(bounds, k.span());
                value_bounds(v, bounds);
            }
        }
        DeValue::Array(a) => a.iter().for_each(|v| value_bounds(v, bounds)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_block_is_found_by_its_id() {
        let src = "version = 1\n\n[defaults]\ntimeout = \"5s\"\n\n# the switch\n[[handler]]\nid = 1\nname = \"a\"\n\n# the crm\n[[handler]]\nid = 12 # crm\nname = \"b\"\n[handler.http]\nurl = \"https://x\"\n\n[[handler]]\nid = 2\n";
        assert_eq!(
            handler_source(src, 1),
            Some("[[handler]]\nid = 1\nname = \"a\"")
        );
        assert_eq!(
            handler_source(src, 12),
            Some("[[handler]]\nid = 12 # crm\nname = \"b\"\n[handler.http]\nurl = \"https://x\"")
        );
        assert_eq!(handler_source(src, 2), Some("[[handler]]\nid = 2"));
        assert_eq!(handler_source(src, 3), None);
    }

    #[test]
    fn an_id_line_inside_another_handlers_string_is_not_a_handler() {
        let src = "version = 1\n[[handler]]\nid = 1\nname = \"\"\"\n[[handler]]\nid = 7\n\"\"\"\nevent = \"clients.create\"\n\n[[handler]]\nid = 7\nname = \"real\"\n";
        assert_eq!(
            handler_source(src, 7),
            Some("[[handler]]\nid = 7\nname = \"real\"")
        );
        assert_eq!(
            handler_source(src, 1),
            Some(
                "[[handler]]\nid = 1\nname = \"\"\"\n[[handler]]\nid = 7\n\"\"\"\nevent = \"clients.create\""
            )
        );
        assert_eq!(handler_source("not [toml", 1), None);
    }
}
