//! Validation of object names and label keys/values, done once at the edge.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters, got {got}")]
    TooLong { max: usize, got: usize },
    #[error(
        "character {ch:?} at position {pos} is not allowed; use letters, digits, '-', '_' and '.'"
    )]
    BadChar { ch: char, pos: usize },
    #[error("must start with a letter or digit")]
    BadStart,
}

fn check(s: &str, max: usize, extra: &[char]) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    let count = s.chars().count();
    if count > max {
        return Err(NameError::TooLong { max, got: count });
    }
    for (pos, ch) in s.chars().enumerate() {
        let ok = ch.is_alphanumeric() || ch == '-' || ch == '_' || ch == '.' || extra.contains(&ch);
        if !ok {
            return Err(NameError::BadChar { ch, pos });
        }
    }
    if !s.chars().next().is_some_and(char::is_alphanumeric) {
        return Err(NameError::BadStart);
    }
    Ok(())
}

/// An object name: unique per kind, usable in URLs and on the command line. Unicode letters
/// are allowed so Chinese names work; separators and spaces are not.
pub fn validate_name(s: &str) -> Result<(), NameError> {
    check(s, 63, &[])
}

/// A label key, e.g. `region` or `gpu.model`; `/` allows prefixed keys like `cpn.io/hub`.
pub fn validate_label_key(s: &str) -> Result<(), NameError> {
    check(s, 63, &['/'])
}

/// A label value. Empty values are allowed, as in Kubernetes.
pub fn validate_label_value(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Ok(());
    }
    check(s, 63, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("zhangjiakou-a100").is_ok());
        assert!(validate_name("张家口").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("-x"), Err(NameError::BadStart));
        assert_eq!(
            validate_name("a b"),
            Err(NameError::BadChar { ch: ' ', pos: 1 })
        );
        assert!(validate_name(&"x".repeat(64)).is_err());
        assert!(validate_label_key("cpn.io/hub").is_ok());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("A100").is_ok());
    }
}
