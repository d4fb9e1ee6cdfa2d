//! Liveness under attack (issue #12): `/healthz` answers within 100 ms while the server is
//! flooded with wrong logins, runs runaway workflow conditions (also after a restart), or
//! holds 20,000 idle connections.
//!
//! These tests are a test binary of their own because their bound is a latency: cargo runs
//! test binaries one after another, so nothing but these tests loads the machine while they
//! run, and `ALONE` makes them take turns.

#[allow(dead_code, unreachable_pub)]
#[path = "../e2e/harness.rs"]
mod harness;

mod idle;
mod login_flood;
mod runaway;

use std::time::Duration;

/// Taken by each test for its whole run, so that no two load the machine at once.
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Issue #12's bound on `/healthz` under attack.
pub const HEALTHZ_BOUND: Duration = Duration::from_millis(100);
