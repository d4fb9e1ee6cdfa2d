//! Scheduling policies (SC-POL): documents with scope, match rules, priority and nesting,
//! CEL rules for extension without recompiling, compiled into `cpn_sched` profiles.
//!
//! The flow: `validate` a document on save; keep its versions in a `PolicyHistory`; per task,
//! `select` the policy that applies (with the reasons, for explain); `resolve` its parent
//! chain; `compile` it into a `Profile` (cache it by policy name and version). The crate is
//! pure: no I/O, no clock, no async.

pub mod compile;
pub mod document;
pub mod error;
pub mod expr;
pub mod history;
pub mod matching;
pub mod resolve;
#[cfg(test)]
mod testkit;
pub mod validate;

pub use compile::{compile, compile_named, is_plugin, spec};
pub use document::{CelRule, CelScoreRule, Direction, GpuPickRule, MatchRules, Policy, Scope};
pub use error::PolicyError;
pub use expr::{CelFilter, CelScore, FieldDoc, VARIABLES};
pub use history::PolicyHistory;
pub use matching::{Check, Match, Rejected, RunnerUp, check, select};
pub use resolve::{ResolvedPolicy, resolve};
pub use validate::{Diagnostic, validate};
