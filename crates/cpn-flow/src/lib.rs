//! The workflow engine's pure core (DO-FLOW-01..08, seed 004 lean metrics).
//!
//! - `validate`: every problem of a `FlowDefinition`, each with a field path.
//! - `subst`: `${inputs.x}`, `${steps.ID.outputs.y}` and `${item}` in actions.
//! - `run`: `FlowRun`, the step state machine. Every transition is a journal entry, and
//!   `FlowRun::replay` rebuilds the same state from the journal, which is how a restarted
//!   server resumes a workflow.
//! - `report`: lean metrics (start, end, duration, wait, a task's queue wait apart from its
//!   run time; parallel and serial rates; the critical path).
//!
//! No I/O, no clock: callers pass `now`.

pub mod cond;
pub mod report;
pub mod run;
pub mod subst;
pub mod validate;

pub use report::report;
pub use run::{Command, FlowRun, StepRun, TaskTiming};
pub use validate::{FlowError, validate};

#[cfg(test)]
mod tests;
