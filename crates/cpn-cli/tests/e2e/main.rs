//! End-to-end tests: the real `cpn` binary serving on an ephemeral port over a temp data dir,
//! driven through HTTP and through the CLI, as a user would.

mod harness;

mod auth;
mod federation;
mod registry;
mod restart;
mod scheduling;
mod simulation;
mod slurm;
mod tasks;
mod topology;
