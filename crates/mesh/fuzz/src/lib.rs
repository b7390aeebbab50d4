//! The checks of the mesh's fuzz targets (`fuzz_targets/`), one module a target, kept apart from
//! the targets so that `crates/mesh/tests/fuzz_corpus.rs` compiles the same files on stable and
//! replays the committed corpora through the same properties.
//!
//! Never weakens a property to make a run pass: a failed assertion here is a bug in the codec,
//! the snapshot reader or the record format, and becomes a regression test.

pub mod event_codec;
pub mod input;
pub mod snapshot;
