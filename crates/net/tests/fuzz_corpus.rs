//! Replays the committed corpus of the API's fuzz target (`fuzz/corpus/api_bodies/`) on
//! stable, through the very check the target runs (`fuzz/src/api_bodies.rs`, compiled in
//! here), so CI covers it without nightly or cargo-fuzz. Entries named `valid_*` must be
//! accepted; some entries must not.

#[path = "../fuzz/src/api_bodies.rs"]
mod api_bodies;

use std::path::Path;

#[test]
fn every_api_bodies_corpus_entry_passes_the_fuzz_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/api_bodies");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|e| e.expect("cannot list the corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    let mut accepted = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let ok = std::panic::catch_unwind(|| api_bodies::check(&data))
            .unwrap_or_else(|_| panic!("corpus entry {name} fails the fuzz check"));
        if name.starts_with("valid_") {
            assert!(ok, "corpus entry {name} should be accepted");
        }
        accepted += usize::from(ok);
    }
    assert!(accepted > 0, "no corpus entry is accepted");
    assert!(accepted < files.len(), "every corpus entry is accepted");
}
