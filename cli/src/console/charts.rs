//! Charts as inline SVG, drawn on the server: nothing is loaded from
//! anywhere. Every text that goes into a chart is escaped here, since the
//! SVG is inserted into the page as markup.

use std::fmt::Write as _;

/// Escapes text for SVG (XML) content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small line of counts (a handler's calls per hour).
pub(crate) fn sparkline(values: &[u64], label: &str) -> String {
    let (w, h) = (120.0, 24.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = w / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (*v as f64 / max) * (h - 4.0)
            )
        })
        .collect();
    format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>"#,
        esc(label),
        points.join(" ")
    )
}

/// The colour class of an outcome (the stylesheet gives the colours).
pub(crate) fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "processed" => "ok",
        "modified" => "mod",
        "forbidden" => "forbid",
        "skipped" | "condition_false" => "skip",
        "interrupted" => "warn",
        _ => "bad",
    }
}

/// Stacked bars: per hour (oldest first), one segment per series.
pub(crate) fn stacked_bars(
    series: &[(&str, Vec<u64>)],
    hour_labels: &[String],
    title: &str,
) -> String {
    let n = hour_labels.len().max(1);
    let (w, h, left, bottom) = (720.0, 180.0, 36.0, 20.0);
    let bar = (w - left) / n as f64;
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let scale = (h - bottom - 8.0) / max;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        svg,
        r#"<text class="axis" x="0" y="12">{}</text><line class="axis" x1="{left}" y1="{}" x2="{w}" y2="{}"/>"#,
        max as u64,
        h - bottom,
        h - bottom
    );
    for (i, label) in hour_labels.iter().enumerate() {
        let x = left + i as f64 * bar;
        let mut y = h - bottom;
        for (name, values) in series {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let height = v as f64 * scale;
            y -= height;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{} {}: {}</title></rect>"#,
                outcome_class(name),
                x + 1.0,
                y,
                (bar - 2.0).max(1.0),
                height,
                esc(label),
                esc(name),
                v
            );
        }
        if i % 3 == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{}">{}</text>"#,
                x,
                h - 6.0,
                esc(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of p50 and p95 durations per handler.
pub(crate) fn duration_bars(rows: &[(String, Option<u64>, Option<u64>)], title: &str) -> String {
    let row_h = 22.0;
    let (w, left) = (720.0, 220.0);
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let max = rows
        .iter()
        .filter_map(|r| r.2.or(r.1))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let scale = (w - left - 80.0) / max;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    for (i, (name, p50, p95)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r#"<text class="label" x="0" y="{:.1}">{}</text>"#,
            y + 14.0,
            esc(name)
        );
        if let Some(p95) = p95 {
            let _ = write!(
                svg,
                r#"<rect class="p95" x="{left}" y="{:.1}" width="{:.1}" height="16"><title>p95 {p95} ms</title></rect>"#,
                y,
                (*p95 as f64 * scale).max(1.0)
            );
        }
        if let Some(p50) = p50 {
            let _ = write!(
                svg,
                r#"<rect class="p50" x="{left}" y="{:.1}" width="{:.1}" height="16"><title>p50 {p50} ms</title></rect>"#,
                y,
                (*p50 as f64 * scale).max(1.0)
            );
        }
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}">{} / {} ms</text>"#,
            left + p95.or(*p50).unwrap_or(0) as f64 * scale + 6.0,
            y + 13.0,
            p50.map_or("-".into(), |v| v.to_string()),
            p95.map_or("-".into(), |v| v.to_string())
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_charts_is_escaped() {
        let svg = duration_bars(
            &[("<script>alert(1)</script>".into(), Some(1), Some(2))],
            "t",
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        let svg = sparkline(&[1, 2], "a\"b");
        assert!(svg.contains("a&quot;b"));
    }

    #[test]
    fn bars_stack_per_hour() {
        let svg = stacked_bars(
            &[("processed", vec![1, 0]), ("failed", vec![1, 2])],
            &["10:00".into(), "11:00".into()],
            "calls",
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"class="bad""#) && svg.contains(r#"class="ok""#));
    }
}
