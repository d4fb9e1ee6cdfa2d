//! Pure domain types of cpn shared by every other crate.
//!
//! Nothing here does I/O, reads a clock or allocates ids: callers pass time and identity in.
//! That is what lets the scheduler and the digital twin run the same code as the server.

pub mod cron;
pub mod geo;
pub mod kind;
pub mod labels;
pub mod name;
pub mod selector;

pub use geo::GeoPoint;
pub use kind::Kind;
pub use labels::{InheritanceContext, Labels};
pub use name::{NameError, validate_label_key, validate_label_value, validate_name};
pub use selector::{Requirement, Selector, SelectorError};
