//! Replays the committed corpora of the mesh's fuzz targets (`fuzz/corpus/snapshot/`,
//! `fuzz/corpus/event_codec/`) on stable, through the very checks the targets run (the files
//! of `fuzz/src/`, compiled in here), so CI covers them without nightly or cargo-fuzz. Entries
//! named `valid_*` must decode; some entries must not.

#[path = "../fuzz/src/event_codec.rs"]
mod event_codec;
#[path = "../fuzz/src/input.rs"]
mod input;
#[path = "../fuzz/src/snapshot.rs"]
mod snapshot;

use std::path::{Path, PathBuf};

/// The files of corpus `target`, sorted; fails if it is missing or empty.
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("cannot list the corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

/// Puts every entry of corpus `target` through `check`; `valid_*` entries must decode, and
/// both outcomes must occur.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let files = corpus_files(target);
    let mut decoded = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let ok = std::panic::catch_unwind(|| check(&data))
            .unwrap_or_else(|_| panic!("{target} corpus entry {name} fails the fuzz check"));
        if name.starts_with("valid_") {
            assert!(ok, "{target} corpus entry {name} should decode");
        }
        decoded += usize::from(ok);
    }
    assert!(decoded > 0, "no {target} corpus entry decodes");
    assert!(decoded < files.len(), "every {target} corpus entry decodes");
}

#[test]
fn every_snapshot_corpus_entry_passes_the_fuzz_check() {
    replay("snapshot", snapshot::check);
}

#[test]
fn every_event_codec_corpus_entry_passes_the_fuzz_check() {
    replay("event_codec", event_codec::check);
}
