//! The checks of the API's fuzz target (`fuzz_targets/`), kept apart from the target so that
//! `crates/net/tests/fuzz_corpus.rs` compiles the same file on stable and replays the committed
//! corpus through the same properties.
//!
//! Never weakens a property to make a run pass: a failed assertion here is a bug in the wire
//! types, the server's extractors or its validation, and becomes a regression test.

pub mod api_bodies;
