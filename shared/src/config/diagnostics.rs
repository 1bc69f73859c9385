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
        let diagnostics = diags
            .into_iter()
            .map(|mut diag| {
                // Keep spans inside the text so that rendering never fails.
                let end = source.len();
                diag.span = diag.span.start.min(end)..diag.span.end.min(end);
                let (line, column) = line_col(source, diag.span.start);
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

    /// All diagnostics as a person reads them, followed by a count.
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
        for d in &self.diagnostics {
            if handler.render_report(&mut out, d).is_err() {
                // Rendering into a String cannot fail in practice; fall back to plain text.
                out.push_str(&format!("{}: {}\n", d.location().0, d.message()));
            }
            out.push('\n');
        }
        let n = self.diagnostics.len();
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

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
