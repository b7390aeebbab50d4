//! cargo-fuzz target `snapshot`: the checks are `src/snapshot.rs` (`tests/fuzz_corpus.rs` of the mesh crate
//! replays the corpus through them on stable). Run: `cargo +nightly fuzz run snapshot` from
//! `crates/mesh/fuzz` (docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mltrader_mesh_fuzz::snapshot::check(data);
});
