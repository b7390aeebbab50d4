//! Reading a log back: every line checked, every sequence number checked, torn tails told apart
//! from corruption.
//!
//! The rule (docs/FORMAT.md, "Recovery"): the first record of each group-commit batch carries
//! `b=<batch>`, and batch n+1 is written only once batch n is synced. So a bad line with no
//! batch start after it lies in the last batch, which may never have been synced and so was
//! never acknowledged: it and everything after it are a torn write, cut off and reported. A bad
//! line followed by a batch start was synced, and may have been acknowledged: that is
//! corruption, and the scan stops with an error naming the file, the line and the reason. A
//! record is never skipped silently.
//!
//! This module never writes; cutting the torn tail is the caller's decision.

use std::sync::Arc;

use super::record::{parse_line, Record, RecordError};

/// Why a visitor refused a record (replay found it impossible): any error, kept whole as the
/// source of the [`Corruption`] that names the line (and of the store's error that names the
/// file). A `String` or `&str` converts into it with `?` or `.into()`.
pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// The field that marks the first record of each group-commit batch (`b=<batch number>`),
/// always first on its line. Batch n+1 is written only after batch n was synced, so a bad line
/// followed by a batch start was synced: that is corruption. A bad line followed only by
/// records of its own batch is in the last batch, which may never have been synced: a torn
/// tail.
pub use super::record::BATCH_FIELD;

/// Where a scan starts: a byte offset into the file, the line number found there, and the
/// sequence number the next record must carry (None: whatever the first record says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanStart {
    pub offset: u64,
    pub line: u64,
    pub expect_seq: Option<u64>,
}

impl ScanStart {
    /// The beginning of a file.
    pub const BEGINNING: ScanStart = ScanStart {
        offset: 0,
        line: 1,
        expect_seq: None,
    };
}

/// A torn tail: bytes after the last valid record that never formed a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the torn part starts (the file is to be cut there).
    pub offset: u64,
    /// Line number of its first line.
    pub line: u64,
    /// How many bytes are torn.
    pub bytes: u64,
    /// Why its first line is not a record.
    pub reason: String,
    /// Well-formed records after the bad line, cut with it (they were in the same last batch,
    /// which may never have been synced).
    pub valid_records_cut: u64,
}

/// What a scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Valid records read (from the scan's start).
    pub records: u64,
    /// Sequence number of the last valid record, if any was read.
    pub last_seq: Option<u64>,
    /// Byte offset just past the last valid record: where the next append goes.
    pub end_offset: u64,
    /// Line number the next record will have.
    pub next_line: u64,
    pub torn: Option<TornTail>,
}

/// A reason a log cannot be trusted, with the place.
///
/// `reason` says it whole (a refusal's text included, for messages that are shown without
/// their sources); `refused` keeps the visitor's own error, typed, as the source.
#[derive(Clone, Debug, thiserror::Error)]
#[error("line {line} (byte {offset}): {reason}")]
pub struct Corruption {
    pub line: u64,
    pub offset: u64,
    pub reason: String,
    /// The visitor's error, when it refused the record.
    #[source]
    pub refused: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Scans `bytes` (the file's content from `start.offset` on), calling `visit` on every valid
/// record in order. `visit` may refuse a record (replay found it impossible), which is reported
/// as corruption at that line.
pub fn scan(
    bytes: &[u8],
    start: ScanStart,
    mut visit: impl FnMut(&Record<'_>) -> Result<(), VisitError>,
) -> Result<ScanOutcome, Corruption> {
    let mut pos = 0usize;
    let mut line_no = start.line;
    let mut expect = start.expect_seq;
    let mut records = 0u64;
    let mut last_seq = None;
    // The first bad line seen, if any: a torn tail unless a valid record follows.
    let mut bad: Option<(usize, u64, String)> = None;
    let mut cut_after_bad = 0u64;

    while pos < bytes.len() {
        let (line, next) = match memchr::memchr(b'\n', &bytes[pos..]) {
            Some(i) => (&bytes[pos..pos + i + 1], pos + i + 1),
            None => (&bytes[pos..], bytes.len()),
        };
        let complete = line.ends_with(b"\n");
        let parsed = if complete {
            parse_line(line)
        } else {
            Err(RecordError::NoChecksum)
        };
        match parsed {
            Ok(rec) => {
                if let Some((bad_pos, bad_line, reason)) = &bad {
                    if rec.fields.first().is_some_and(|(k, _)| *k == BATCH_FIELD) {
                        // A later batch was written, so the bad line's batch had been synced.
                        return Err(Corruption {
                            line: *bad_line,
                            offset: start.offset + *bad_pos as u64,
                            reason: format!(
                                "{reason}, and a later synced batch follows it (line {line_no})"
                            ),
                            refused: None,
                        });
                    }
                    // Same (last, never synced) batch as the bad line: part of the torn tail.
                    cut_after_bad += 1;
                    pos = next;
                    line_no += 1;
                    continue;
                }
                if let Some(e) = expect {
                    if rec.seq != e {
                        return Err(Corruption {
                            line: line_no,
                            offset: start.offset + pos as u64,
                            reason: format!("sequence number {} where {e} was expected", rec.seq),
                            refused: None,
                        });
                    }
                }
                visit(&rec).map_err(|refused| Corruption {
                    line: line_no,
                    offset: start.offset + pos as u64,
                    reason: format!("replay refused record {}: {refused}", rec.seq),
                    refused: Some(Arc::from(refused)),
                })?;
                expect = Some(rec.seq + 1);
                last_seq = Some(rec.seq);
                records += 1;
            }
            Err(e) => {
                if bad.is_none() {
                    let reason = if complete {
                        e.to_string()
                    } else {
                        "incomplete last line (no newline)".to_string()
                    };
                    bad = Some((pos, line_no, reason));
                }
            }
        }
        pos = next;
        line_no += 1;
    }

    let (end, next_line, torn) = match bad {
        Some((bad_pos, bad_line, reason)) => (
            bad_pos,
            bad_line,
            Some(TornTail {
                offset: start.offset + bad_pos as u64,
                line: bad_line,
                bytes: (bytes.len() - bad_pos) as u64,
                reason,
                valid_records_cut: cut_after_bad,
            }),
        ),
        None => (bytes.len(), line_no, None),
    };
    Ok(ScanOutcome {
        records,
        last_seq,
        end_offset: start.offset + end as u64,
        next_line,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LineBuilder;

    /// Lines, each its own batch (as if synced one by one).
    fn lines(seqs: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &s in seqs {
            let mut b = LineBuilder::new(s, "test");
            b.batch_mark(s).field_num("n", s);
            out.extend_from_slice(b.finish().as_bytes());
        }
        out
    }

    #[test]
    fn clean_file_scans_whole() {
        let bytes = lines(&[1, 2, 3]);
        let out = scan(&bytes, ScanStart::BEGINNING, |_| Ok(())).unwrap();
        assert_eq!(out.records, 3);
        assert_eq!(out.last_seq, Some(3));
        assert_eq!(out.end_offset, bytes.len() as u64);
        assert_eq!(out.next_line, 4);
        assert!(out.torn.is_none());
    }

    #[test]
    fn partial_last_line_is_a_torn_tail() {
        let mut bytes = lines(&[1, 2]);
        let good = bytes.len();
        bytes.extend_from_slice(&lines(&[3])[..10]);
        let out = scan(&bytes, ScanStart::BEGINNING, |_| Ok(())).unwrap();
        assert_eq!(out.records, 2);
        assert_eq!(out.end_offset, good as u64);
        let torn = out.torn.unwrap();
        assert_eq!((torn.offset, torn.line, torn.bytes), (good as u64, 3, 10));
    }

    #[test]
    fn trailing_zeros_and_garbage_lines_are_torn_not_corrupt() {
        let mut bytes = lines(&[1]);
        bytes.extend_from_slice(b"garbage\n\0\0\0\0\n\0\0");
        let out = scan(&bytes, ScanStart::BEGINNING, |_| Ok(())).unwrap();
        assert_eq!(out.records, 1);
        assert_eq!(out.torn.unwrap().line, 2);
    }

    #[test]
    fn bad_line_before_a_valid_one_is_corruption_naming_the_line() {
        let mut bytes = lines(&[1, 2, 3]);
        let second_line_start = lines(&[1]).len();
        bytes[second_line_start + 3] ^= 0x20;
        let err = scan(&bytes, ScanStart::BEGINNING, |_| Ok(())).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.offset, second_line_start as u64);
        assert!(err.reason.contains("later synced batch"), "{err}");
    }

    #[test]
    fn damage_inside_the_last_batch_is_torn_even_with_valid_lines_after_it() {
        let mut bytes = lines(&[1]);
        let good = bytes.len();
        for s in 2..5 {
            let mut b = LineBuilder::new(s, "test");
            if s == 2 {
                b.batch_mark(2);
            }
            bytes.extend_from_slice(b.finish().as_bytes());
        }
        let third = good + lines_len_of_batch_start();
        bytes[third + 2] ^= 0x40;
        let mut seen = Vec::new();
        let out = scan(&bytes, ScanStart::BEGINNING, |r| {
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2], "nothing after the damage is read");
        assert_eq!(out.torn.unwrap().line, 3);
    }

    fn lines_len_of_batch_start() -> usize {
        let mut b = LineBuilder::new(2, "test");
        b.batch_mark(2);
        b.finish().len()
    }

    #[test]
    fn sequence_gaps_and_repeats_are_corruption() {
        for seqs in [&[1, 2, 4][..], &[1, 2, 2], &[5, 4]] {
            let err = scan(&lines(seqs), ScanStart::BEGINNING, |_| Ok(())).unwrap_err();
            assert!(err.reason.contains("sequence number"), "{err}");
        }
        let start = ScanStart {
            offset: 0,
            line: 1,
            expect_seq: Some(7),
        };
        assert!(scan(&lines(&[8]), start, |_| Ok(())).is_err());
    }

    #[test]
    fn a_refused_record_is_reported_with_its_line() {
        let err = scan(&lines(&[1, 2]), ScanStart::BEGINNING, |r| {
            if r.seq == 2 {
                Err("player unknown".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("player unknown"));
    }

    #[test]
    fn scan_from_an_offset_reports_file_positions() {
        let bytes = lines(&[1, 2, 3]);
        let off = lines(&[1]).len();
        let start = ScanStart {
            offset: off as u64,
            line: 2,
            expect_seq: Some(2),
        };
        let out = scan(&bytes[off..], start, |_| Ok(())).unwrap();
        assert_eq!(out.records, 2);
        assert_eq!(out.end_offset, bytes.len() as u64);
        assert_eq!(out.next_line, 4);
    }
}
