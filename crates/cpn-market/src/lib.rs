//! The sharing marketplace's pure core (issue #14, the Shenzhen specification's `SH-USR`,
//! `SH-SUP` and `SH-CL` requirements): accounts and their review, published clusters with a
//! state per GPU card, the search over idle capacity, orders and leases with authorization
//! codes, metering, a double-entry ledger, budgets, invoices and settlement statements.
//!
//! The crate is pure like `cpn-sched`: no I/O, no clock (every function that needs the time
//! takes a [`Timestamp`]), no async and no randomness but the bytes a caller passes in. The
//! server persists what these types decide and calls [`Market`] under one lock or one store
//! transaction; the contracts the store must mirror are written on the methods that change
//! state (the card allocator's on `catalog`, the ledger's on `billing::ledger`).

#![warn(unreachable_pub)]

pub mod account;
pub mod billing;
pub mod catalog;
pub mod evaluation;
pub mod keyed;
pub mod lease;
pub mod listing;
pub mod market;
pub mod money;
pub mod persist;
pub mod search;
pub mod time;
pub mod validation;
pub mod verification;

pub use account::{Account, AccountId, AccountKind, AccountState, SupplierKind, UserKind};
pub use billing::{Ledger, LedgerAccount, TenantId, UsageKind, UsageRecord};
pub use catalog::{CardChoice, CardId, CardState, Catalog, ListingStatus, Occupancy};
pub use evaluation::{Evaluation, Monitoring, NodeReport, NodeSample};
pub use keyed::{HashedIdentifier, IdentifierKind, KeyedHasher};
pub use lease::{EndReason, Lease, LeaseId, LeaseState, Order, OrderId};
pub use listing::{BillingMode, ClusterClass, CpcId, ListingSpec, PriceSheet};
pub use market::{Market, OrderPlaced, OrderRequest};
pub use money::Money;
pub use persist::{
    CardChange, CardRow, Change, LeaseRow, ListingRow, MarketChanges, MarketState, RestoreError,
};
pub use search::{Query, SearchIndex, SortKey};
pub use time::{Month, Timestamp};
pub use validation::{FieldError, Invalid};
