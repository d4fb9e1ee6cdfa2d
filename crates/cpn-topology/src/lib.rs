//! The federation's site/link graph and latency paths over it, kept pure so the scheduler,
//! the server and the digital twin all score network latency with the same code.
//!
//! Build a [`Topology`] with a [`TopologyBuilder`], which rejects bad input at the call that
//! supplied it; then ask [`Topology::shortest_paths`] for the lowest-latency routes from a
//! task's origin site, or [`Topology::estimated_latency`] for a single pair, which falls back
//! to a great-circle estimate when the graph has no route.
//!
//! Link `latency_ms` is round-trip time, as in the registry's `LinkSpec`, which is what
//! makes it comparable with [`cpn_model::geo::estimated_rtt_ms`].
//!
//! Nothing here does I/O, reads a clock or uses randomness (not even `HashMap`'s seed), so
//! the same input always gives the same output.

mod error;
mod graph;
mod paths;

pub use error::TopologyError;
pub use graph::{Edge, LinkAttrs, LinkIndex, Site, SiteIndex, Topology, TopologyBuilder};
pub use paths::{Latency, Paths, Reach};

#[cfg(test)]
mod tests;
