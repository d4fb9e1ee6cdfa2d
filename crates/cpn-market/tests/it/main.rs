//! The marketplace core through its public API: accounts, listings and search, orders and
//! leases, billing, and properties over random inputs. One binary (see STYLE.md).

mod accounts;
mod billing;
mod evaluation;
mod fixtures;
mod leases;
mod listings;
mod persist;
mod properties;
