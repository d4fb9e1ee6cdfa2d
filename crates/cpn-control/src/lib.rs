//! The control services of cpn (issue #13): the registry and its topology, scheduling
//! (explain, dry-run, decisions), simulations and the federation twin, design (templates,
//! plans) and workflows, ops rules, scenarios, identity and accounts, audit, the marketplace
//! and its accounts, notifications. They act for a domain `Caller` or `SystemActor`, return
//! `ServiceError`s and know nothing of HTTP: the edge (`cpn-server`) parses and answers.
//! They build on the runtime (`cpn-runtime`), which never calls them but through the
//! [`hooks`] they hand it.

// `pub` only what another crate uses.
#![warn(unreachable_pub)]

pub mod audit;
pub mod auth;
pub mod design;
pub mod federation;
pub mod flows;
pub mod hooks;
pub mod identity;
pub mod market;
pub mod market_accounts;
pub mod notify;
pub mod registry;
pub mod rules;
pub mod scenario;
pub mod schedule;
pub mod sealed_secrets;
pub mod simulation;
pub mod state;
mod throttle;
pub mod topology;
pub mod totp;

// The runtime's modules under the paths the services name them by
// (`crate::runtime::binder`, `crate::caller`, ...).
use cpn_runtime as runtime;
use cpn_runtime::{caller, error, inventory, join, limits, policy};
