//! Fuzz target for the record parser: `parse_line` never panics, whatever the bytes, and any
//! line it accepts re-encodes (with `LineBuilder`) to a line that parses to the same record.
//!
//! Random bytes almost never carry a valid checksum, so each input is also tried as the content
//! of a line with its checksum fixed up: that lets the fuzzer reach the field and escape parser.
//! `tests/fuzz_corpus.rs` runs the same check over the seed corpus on stable.
//!
//! Run by hand: `cd fuzz && cargo +nightly fuzz run parse_record` (see docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mltrader_store::record::{finish_line, parse_line, MAX_RECORD_BYTES};

/// Parses `data`; if it parses, re-encodes the record and checks it parses to the same record.
fn check(data: &[u8]) {
    let Ok(rec) = parse_line(data) else {
        return;
    };
    let line = rec.to_line();
    let again = parse_line(line.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded line {line:?} does not parse: {e}"));
    assert_eq!(again, rec, "round trip changed the record; line {line:?}");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(content) = std::str::from_utf8(data) {
        if content.len() + 11 <= MAX_RECORD_BYTES {
            let mut line = content.to_string();
            finish_line(&mut line, 0);
            check(line.as_bytes());
        }
    }
});
