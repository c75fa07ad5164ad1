//! Diagnostics as data: a span (file, line, column), the object, the field
//! path and the message. Rendered as
//! `path:line:col: Kind namespace/name: field.path: message`.

use std::fmt;
use std::sync::Arc;

/// Where a value came from. Line and column are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), when known.
    pub object: Option<String>,
    /// Dotted field path, e.g. `spec.ports[0].port`; empty when the problem is the whole file.
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl Diagnostic {
    pub fn error(span: Span, object: Option<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, span, object, field: field.into(), message: message.into() }
    }
    pub fn warning(span: Span, object: Option<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, span, object, field: field.into(), message: message.into() }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.span)?;
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        if let Some(obj) = &self.object {
            write!(f, "{obj}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Sort by file, line, column, then severity: the order `check` prints.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.span.file, a.span.line, a.span.col, a.severity, &a.field, &a.message).cmp(&(
            &b.span.file,
            b.span.line,
            b.span.col,
            b.severity,
            &b.field,
            &b.message,
        ))
    });
}

#[derive(serde::Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    file: &'a str,
    line: u32,
    column: u32,
    object: Option<&'a str>,
    field: &'a str,
    message: &'a str,
}

/// The `--format json` form: an array with one object per diagnostic.
pub fn to_json(diags: &[Diagnostic]) -> String {
    let rows: Vec<JsonDiagnostic<'_>> = diags
        .iter()
        .map(|d| JsonDiagnostic {
            severity: d.severity,
            file: &d.span.file,
            line: d.span.line,
            column: d.span.col,
            object: d.object.as_deref(),
            field: &d.field,
            message: &d.message,
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_string())
}
