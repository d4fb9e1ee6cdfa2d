//! Label selectors in the Kubernetes syntax, used by every list endpoint (RM-TAG-05).
//!
//! `region=east,gpu.model in (A100,H800),!deprecated` is three requirements that must all hold:
//! `k=v` / `k==v`, `k!=v` (true when k is absent too), `k in (a,b)`, `k notin (a,b)` (true when
//! absent), `k` (exists) and `!k` (does not exist).

use crate::labels::Labels;
use crate::name::validate_label_key;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// A conjunction of requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("selector error at position {position}: {message}")]
pub struct SelectorError {
    /// Zero-based character offset in the selector text.
    pub position: usize,
    pub message: String,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
        }
        .selector()
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            position: self.pos,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn is_word_char(c: char) -> bool {
        c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(Self::is_word_char) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        let key = self.word();
        if key.is_empty() {
            return self.err("expected a label key");
        }
        if let Err(e) = validate_label_key(&key) {
            self.pos = start;
            return self.err(format!("invalid key {key:?}: {e}"));
        }
        Ok(key)
    }

    fn value(&mut self) -> String {
        self.skip_ws();
        self.word()
    }

    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        self.skip_ws();
        if !self.eat("(") {
            return self.err("expected '(' to start a value list");
        }
        let mut values = Vec::new();
        loop {
            let v = self.value();
            if v.is_empty() {
                return self.err("expected a value");
            }
            values.push(v);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat(")") {
                return Ok(values);
            }
            return self.err("expected ',' or ')' in value list");
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_ws();
        if self.eat("!") {
            return Ok(Requirement::NotExists(self.key()?));
        }
        let key = self.key()?;
        self.skip_ws();
        if self.eat("!=") {
            return Ok(Requirement::NotEquals(key, self.value()));
        }
        if self.eat("==") || self.eat("=") {
            return Ok(Requirement::Equals(key, self.value()));
        }
        let save = self.pos;
        match self.word().as_str() {
            "in" => Ok(Requirement::In(key, self.value_list()?)),
            "notin" => Ok(Requirement::NotIn(key, self.value_list()?)),
            "" => Ok(Requirement::Exists(key)),
            other => {
                self.pos = save;
                self.err(format!(
                    "unexpected {other:?} after key {key:?}; expected =, ==, !=, in or notin"
                ))
            }
        }
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        self.skip_ws();
        if self.peek().is_none() {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_ws();
            match self.peek() {
                None => return Ok(Selector { requirements }),
                Some(',') => self.pos += 1,
                Some(c) => {
                    return self.err(format!("unexpected {c:?}; separate requirements with ','"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_issue_example() {
        let s = Selector::parse("region=east,gpu.model in (A100,H800),!deprecated").unwrap();
        assert_eq!(
            s.requirements,
            vec![
                Requirement::Equals("region".into(), "east".into()),
                Requirement::In("gpu.model".into(), vec!["A100".into(), "H800".into()]),
                Requirement::NotExists("deprecated".into()),
            ]
        );
        assert!(s.matches(&labels(&[("region", "east"), ("gpu.model", "H800")])));
        assert!(!s.matches(&labels(&[("region", "east"), ("gpu.model", "V100")])));
        assert!(!s.matches(&labels(&[
            ("region", "east"),
            ("gpu.model", "A100"),
            ("deprecated", "")
        ])));
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&l);
        assert!(m("a==1"));
        assert!(m("a != 2"));
        assert!(m("c!=1"), "!= holds when the key is absent");
        assert!(m("b in (1, 2)"));
        assert!(!m("b notin (2)"));
        assert!(m("c notin (2)"), "notin holds when the key is absent");
        assert!(m("a"));
        assert!(!m("c"));
        assert!(m("!c"));
        assert!(m(""));
        assert!(m("  "));
        assert!(m("a=1 , b=2"));
    }

    #[test]
    fn errors_carry_positions() {
        let e = Selector::parse("a in 1").unwrap_err();
        assert_eq!(e.position, 5);
        let e = Selector::parse("a=1,,b").unwrap_err();
        assert_eq!(e.position, 4);
        let e = Selector::parse("a in (x,").unwrap_err();
        assert_eq!(e.position, 8);
        let e = Selector::parse("a foo").unwrap_err();
        assert_eq!(e.position, 2);
        assert!(Selector::parse("a=1 b=2").is_err());
    }
}
