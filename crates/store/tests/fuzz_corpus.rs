//! Runs the fuzz target's check over its seed corpus (`fuzz/corpus/parse_record/`) on stable, so
//! CI covers the corpus without nightly or cargo-fuzz: `parse_line` never panics, and any line it
//! accepts re-encodes with `LineBuilder` to a line that parses to the same record.

use std::path::{Path, PathBuf};

use mltrader_store::record::{finish_line, parse_line, MAX_RECORD_BYTES};

/// The same check as `fuzz/fuzz_targets/parse_record.rs` (that crate cannot be a dependency of
/// this one). Returns whether `data` parsed.
fn check(data: &[u8]) -> bool {
    let Ok(rec) = parse_line(data) else {
        return false;
    };
    let line = rec.to_line();
    let again = parse_line(line.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded line {line:?} does not parse: {e}"));
    assert_eq!(again, rec, "round trip changed the record; line {line:?}");
    true
}

/// The fuzz target's input handling: `data` as a line, then as a line's content with its
/// checksum fixed up. Returns whether the first and the second parsed.
fn fuzz_one(data: &[u8]) -> (bool, bool) {
    let as_line = check(data);
    let mut as_content = false;
    if let Ok(content) = std::str::from_utf8(data) {
        if content.len() + 11 <= MAX_RECORD_BYTES {
            let mut line = content.to_string();
            finish_line(&mut line, 0);
            as_content = check(line.as_bytes());
        }
    }
    (as_line, as_content)
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_record");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("cannot list the seed corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the seed corpus {} is empty",
        dir.display()
    );
    files
}

#[test]
fn every_seed_corpus_entry_passes_the_fuzz_check() {
    let mut parsed = 0;
    let files = corpus_files();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let (ok, _) = std::panic::catch_unwind(|| fuzz_one(&data))
            .unwrap_or_else(|_| panic!("corpus entry {name} fails the fuzz check"));
        if name.starts_with("valid_") {
            assert!(
                ok,
                "corpus entry {name} should parse: {:?}",
                parse_line(&data)
            );
        }
        parsed += usize::from(ok);
    }
    // Both outcomes are exercised: some entries parse (round trip), some are rejected.
    assert!(parsed > 0, "no corpus entry parses");
    assert!(parsed < files.len(), "every corpus entry parses");
}

/// A line of exactly `MAX_RECORD_BYTES` bytes before its newline (the longest the reader takes).
fn longest_readable_line() -> String {
    // The limit counts the newline.
    let content_len = MAX_RECORD_BYTES - " ~12345678\n".len();
    let prefix = "1 chat v=";
    let content = format!("{prefix}{}", "x".repeat(content_len - prefix.len()));
    format!("{content} ~{:08x}\n", crc32c(content.as_bytes()))
}

/// Bitwise CRC32C (Castagnoli), to build a line the writer refuses to make.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[test]
fn the_longest_readable_line_round_trips() {
    let line = longest_readable_line();
    assert_eq!(line.len(), MAX_RECORD_BYTES);
    assert!(parse_line(line.as_bytes()).is_ok(), "the reader takes it");
    assert!(check(line.as_bytes()));
    // One byte more is refused by the reader, as the writer would refuse to make it.
    let longer = line.replacen("v=", "v=x", 1);
    assert!(parse_line(longer.as_bytes()).is_err());
}
