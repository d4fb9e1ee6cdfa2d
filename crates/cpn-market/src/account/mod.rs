//! Accounts of the marketplace (SH-USR, SH-SUP; the Ius and Icpcss interfaces): what a
//! registration must contain and how it is checked ([`registration`]), the identity numbers'
//! own check digits ([`identity`]), and the account's lifecycle ([`lifecycle`]).
//!
//! Passwords are not handled here: the server's existing credential code checks strength
//! (zxcvbn) and that the two entries match, and stores an Argon2 hash, as it does for every
//! account. This crate owns the marketplace-specific rest.

pub mod identity;
pub mod lifecycle;
pub mod registration;

pub use lifecycle::{Account, AccountId, AccountState, Deregistration, LifecycleError, Transition};
pub use registration::{
    AccountKind, AccountProfile, Contact, EnterpriseSupplier, IndividualSupplier, Organization,
    Registration, SupplierKind, UserKind, UserRegistration,
};
