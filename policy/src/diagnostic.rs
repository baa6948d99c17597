//! Problems found in a policy file, each with the line it is on.

use std::fmt;

use serde::Serialize;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// 1-based line number, when the problem has a place in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A policy file that cannot be used. Carries every error, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct PolicyError {
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = format!("the policy has {} error(s)", diagnostics.len());
    for d in diagnostics {
        out.push_str("; ");
        out.push_str(&d.to_string());
    }
    out
}

/// The result of `check`: errors make the file unusable, warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl CheckReport {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Collects errors and warnings while compiling, translating byte spans into lines.
pub(crate) struct Sink<'t> {
    text: &'t str,
    pub report: CheckReport,
}

impl<'t> Sink<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Sink {
            text,
            report: CheckReport::default(),
        }
    }

    pub(crate) fn line_of(&self, span: std::ops::Range<usize>) -> Option<usize> {
        line_of(self.text, span.start)
    }

    pub(crate) fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span);
        self.report.errors.push(Diagnostic {
            line,
            message: message.into(),
        });
    }

    pub(crate) fn warning(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span);
        self.report.warnings.push(Diagnostic {
            line,
            message: message.into(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.report.errors.is_empty()
    }
}

/// The 1-based line holding byte `offset`; `None` past the end of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> Option<usize> {
    let head = text.as_bytes().get(..offset)?;
    Some(head.iter().filter(|b| **b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let text = "a\nb\nc";
        assert_eq!(line_of(text, 0), Some(1));
        assert_eq!(line_of(text, 2), Some(2));
        assert_eq!(line_of(text, 4), Some(3));
        assert_eq!(line_of(text, 99), None);
    }

    #[test]
    fn error_lists_every_diagnostic() {
        let err = PolicyError {
            diagnostics: vec![
                Diagnostic {
                    line: Some(3),
                    message: "unknown zone `X`".into(),
                },
                Diagnostic {
                    line: None,
                    message: "no roles".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "the policy has 2 error(s); line 3: unknown zone `X`; no roles"
        );
    }
}
