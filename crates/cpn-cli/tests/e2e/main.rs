//! End-to-end tests: the real `cpn` binary serving on an ephemeral port over a temp data dir,
//! driven through HTTP and through the CLI, as a user would.

#[allow(dead_code)] // shared with the liveness test binary, which uses other parts
mod harness;

mod accounts;
mod auth;
mod design;
mod differential;
mod emulated;
mod federation;
mod flows;
mod isolation;
mod join;
mod lease_ssh;
mod limits;
mod livestate;
mod market;
mod market_accounts;
mod market_eval;
mod plans;
mod readme_start;
mod registry;
mod restart;
mod rules;
mod scheduling;
mod simulation;
mod slurm;
mod tasks;
mod topology;
mod web;
