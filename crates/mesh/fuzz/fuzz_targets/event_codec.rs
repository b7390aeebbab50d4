//! cargo-fuzz target `event_codec`: the checks are `src/event_codec.rs` (`tests/fuzz_corpus.rs` of the mesh crate
//! replays the corpus through them on stable). Run: `cargo +nightly fuzz run event_codec` from
//! `crates/mesh/fuzz` (docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mltrader_mesh_fuzz::event_codec::check(data);
});
