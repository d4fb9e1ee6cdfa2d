//! Benchmarks of the marketplace core (placeholder until the search and close exist).
fn main() {}
