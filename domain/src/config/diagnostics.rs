//! Diagnostics for `handlers.toml`: each one names the file, line and column,
//! shows the offending snippet and says how to fix it (rendered by miette).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
};

/// One problem, before it is attached to its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) label: Option<String>,
    pub(crate) help: Option<String>,
    pub(crate) related: Vec<(Range<usize>, String)>,
}

impl Diag {
    pub(crate) fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Diag {
            span,
            message: message.into(),
            label: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// One problem in a named file.
#[derive(Debug, Clone)]
pub struct ConfigDiagnostic {
    source: NamedSource<Arc<str>>,
    diag: Diag,
    line: usize,
    column: usize,
}

impl ConfigDiagnostic {
    pub fn message(&self) -> &str {
        &self.diag.message
    }

    pub fn help_text(&self) -> Option<&str> {
        self.diag.help.as_deref()
    }

    /// 1-based line and column of the offending text.
    pub fn location(&self) -> (usize, usize) {
        (self.line, self.column)
    }
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for ConfigDiagnostic {}

impl Diagnostic for ConfigDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!(
            "{}:{}:{}",
            self.source.name(),
            self.line,
            self.column
        )))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            self.diag.label.clone(),
            SourceSpan::from(self.diag.span.clone()),
        );
        let related = self
            .diag
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), span.clone()));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    name: String,
    diagnostics: Vec<ConfigDiagnostic>,
}

impl ConfigErrors {
    pub(crate) fn new(name: &str, source: &str, diags: Vec<Diag>) -> Self {
        let shared: Arc<str> = Arc::from(source);
        let lines = LineIndex::new(source);
        let diagnostics = diags
            .into_iter()
            .map(|mut diag| {
                // A message quotes what the file says, which may be huge.
                diag.message = cut_text(&diag.message);
                diag.label = diag.label.as_deref().map(cut_text);
                // Keep spans inside the text so that rendering never fails.
                let end = source.len();
                diag.span = diag.span.start.min(end)..diag.span.end.min(end);
                let (line, column) = lines.line_col(source, diag.span.start);
                ConfigDiagnostic {
                    source: NamedSource::new(name, shared.clone()).with_language("toml"),
                    diag,
                    line,
                    column,
                }
            })
            .collect();
        ConfigErrors {
            name: name.to_owned(),
            diagnostics,
        }
    }

    pub fn diagnostics(&self) -> &[ConfigDiagnostic] {
        &self.diagnostics
    }

    pub fn len(&self) -> usize {
        self.diagnostics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics as a person reads them (the first [`MAX_SHOWN`]; a
    /// problem on a very long line as an excerpt), followed by a count.
    /// `color` adds ANSI colours (for a terminal).
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_context_lines(1);
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            if d.on_long_line() {
                out.push_str(&d.excerpt());
            } else if handler.render_report(&mut out, d).is_err() {
                // Rendering into a String cannot fail in practice; fall back to plain text.
                out.push_str(&format!("{}: {}\n", d.location().0, d.message()));
            }
            out.push('\n');
        }
        let n = self.diagnostics.len();
        if n > MAX_SHOWN {
            out.push_str(&format!(
                "… and {} more problems, not shown: fix these first\n",
                n - MAX_SHOWN
            ));
        }
        out.push_str(&format!(
            "{}: {n} error{} found\n",
            self.name,
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for ConfigErrors {}

/// At most 200 characters of a message or label (what it quotes is cut).
fn cut_text(s: &str) -> String {
    if s.chars().count() <= 200 {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(199).collect();
    out.push('…');
    out
}

/// At most this many problems are shown in full; the rest are counted.
pub(crate) const MAX_SHOWN: usize = 50;

/// A problem on a line longer than this (or this far along it) is shown as an
/// excerpt: a whole line could be a megabyte, and the renderer cannot pad
/// past 65,535 columns.
const MAX_LINE: usize = 240;

/// Where each line starts, found once for all diagnostics.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(source: &str) -> Self {
        LineIndex(
            std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    /// 1-based line and column (in characters) of `offset`.
    fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(source, offset);
        let line = self.0.partition_point(|&start| start <= offset);
        let start = self.0[line - 1];
        (line, source[start..offset].chars().count() + 1)
    }
}

impl ConfigDiagnostic {
    /// The text of the problem's line.
    fn line_text(&self) -> &str {
        let text: &str = self.source.inner();
        let at = floor_char_boundary(text, self.diag.span.start);
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        &text[start..end]
    }

    fn on_long_line(&self) -> bool {
        self.column > MAX_LINE || self.line_text().chars().count() > MAX_LINE
    }

    /// The problem with 60 characters of its line on either side.
    fn excerpt(&self) -> String {
        let line: Vec<char> = self.line_text().chars().collect();
        let at = (self.column - 1).min(line.len());
        let from = at.saturating_sub(60);
        let to = (at + 60).min(line.len());
        let mut shown: String = line[from..to].iter().collect();
        let mut caret = at - from;
        if from > 0 {
            shown.insert(0, '…');
            caret += 1;
        }
        if to < line.len() {
            shown.push('…');
        }
        let mut out = format!(
            "  × {}\n   ╭─[{}:{}:{}]\n   │ {shown}\n   │ {}^ {}\n",
            self.diag.message,
            self.source.name(),
            self.line,
            self.column,
            " ".repeat(caret),
            self.diag.label.as_deref().unwrap_or("here"),
        );
        if let Some(h) = &self.diag.help {
            out.push_str(&format!("  help: {h}\n"));
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
