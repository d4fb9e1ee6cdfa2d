//! Field-level validation errors shared by registrations and listings: each names the field
//! by its dotted path and says how to fix it, and validation returns every error at once so
//! a form can show them all (SH-USR-06, SH-USR-08).

use std::fmt;

/// One rejected field: `path` as the form or JSON names it (`organization.credit_code`),
/// `fix` as a sentence the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub fix: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.fix)
    }
}

/// Every field error of one submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), join(.0))]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// Whether `path` is among the rejected fields (tests and forms highlight by path).
    pub fn names(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field errors while a submission is checked; `finish` turns them into `Invalid`.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    pub(crate) fn reject(&mut self, path: impl Into<String>, fix: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            fix: fix.into(),
        });
    }

    /// Rejects `path` with `fix` unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, path: &str, fix: &str) {
        if !ok {
            self.reject(path, fix);
        }
    }

    /// Rejects an empty (after trimming) or over-long text.
    pub(crate) fn text(&mut self, value: &str, path: &str, max_chars: usize) {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            self.reject(path, "required: fill it in");
        } else if trimmed.chars().count() > max_chars {
            self.reject(path, format!("too long: at most {max_chars} characters"));
        }
    }

    pub(crate) fn finish(self) -> Result<(), Invalid> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.errors))
        }
    }
}
