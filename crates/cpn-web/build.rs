//! Rebuilds the crate when anything under `assets/` changes, files added or removed
//! included: rust-embed's `include_bytes!` alone only notices edits to files it embedded.

fn main() {
    println!("cargo:rerun-if-changed=assets");
}
