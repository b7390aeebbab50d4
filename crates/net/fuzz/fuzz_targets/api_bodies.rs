//! cargo-fuzz target `api_bodies`: the checks are `src/api_bodies.rs` (`tests/fuzz_corpus.rs` of
//! the net crate replays the corpus through them on stable). Run: `cargo +nightly fuzz run
//! api_bodies` from `crates/net/fuzz` (docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mltrader_net_fuzz::api_bodies::check(data);
});
