//! The digital twin's simulator: a deterministic discrete-event engine that drives the real
//! scheduler (`cpn_sched::Scheduler`) over traces, the replay protocol of the Alibaba GPU
//! trace benchmark (FGD, ATC '23), parallel sweeps of policies × seeds, and the fidelity
//! check against the published results.
//!
//! Pure: no async runtime and no file or network I/O — trace readers take text or a
//! `BufRead`, the CLI opens the files. Randomness comes only from the seed (see [`rng`]).

pub mod engine;
pub mod federation;
pub mod policy;
pub mod protocol;
pub mod published;
pub mod rng;
pub mod sweep;
pub mod trace;

pub use engine::{Engine, EventKind, Outcome, SimTask, Time};
pub use protocol::{Curve, RunResult, Sample, Trace, X_MAX};
pub use published::{Fidelity, Published, Stats};
pub use trace::{NodeRow, PodRow, Problem, TraceError};
