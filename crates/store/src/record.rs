//! The record format: one record a line, readable by a person, checked by a machine.
//!
//! ```text
//! 42 depart t=1200 xfer=sol:7 player="Barnard's Kid" from=sol to=alpha-centauri credits=1000 ~3f09a1c2
//! ```
//!
//! A line is `SEQ KIND FIELD...` followed by ` ~` and the CRC32C (8 lowercase hex digits) of
//! every byte before ` ~`, then `\n`. A field is `key=value`; a key is `[a-z0-9_.]+`; a value is
//! either bare (`[A-Za-z0-9_.:/+@-]+`, non-empty) or a double-quoted string in which `\\`, `\"`,
//! `\n`, `\r`, `\t` and `\u{HEX}` (any other control character) are escaped and every other
//! character, any UTF-8, stands as itself. `docs/FORMAT.md` is the reference with examples.
//!
//! This module owns encoding and parsing one line. It never touches a file, and parsing never
//! panics, whatever the bytes (a property test and a fuzz target guard that).

use std::borrow::Cow;
use std::fmt::Write as _;

/// A record longer than this is refused when written and rejected when read, so that a corrupt
/// length can never make a reader swallow the rest of a file as one line.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The field the log puts first on the first record of each group-commit batch
/// (`b=<batch number>`; see `scan`). Reserved: no writer may use this key.
pub const BATCH_FIELD: &str = "b";

/// A kind longer than this is malformed.
pub const MAX_KIND_BYTES: usize = 32;

/// Why a line is not a valid record. Each says what is wrong; the caller adds file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("line is longer than {MAX_RECORD_BYTES} bytes")]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("no checksum (a line ends with ` ~` and 8 hex digits)")]
    NoChecksum,
    #[error("checksum mismatch: line says {stored:08x}, content has {computed:08x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("bad sequence number {0:?}")]
    BadSeq(String),
    #[error("bad kind {0:?}")]
    BadKind(String),
    #[error("bad field {0:?}: {1}")]
    BadField(String, &'static str),
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("field {key:?} has bad value {value:?}: expected {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// One parsed record, borrowing from the line it came from (values without escapes are not
/// copied: replay speed depends on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub fields: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Record<'a> {
    /// The value of `key`, if present (the first one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The value of `key`, or an error naming the missing field.
    pub fn str(&self, key: &'static str) -> Result<&str, RecordError> {
        self.get(key).ok_or(RecordError::MissingField(key))
    }

    /// The record written again as one line, exactly as a writer would write it (its batch
    /// mark, if any, stays the batch mark).
    pub fn to_line(&self) -> String {
        let mut buf = String::with_capacity(128);
        let mut line = Line::new(&mut buf, self.seq, self.kind);
        for (k, v) in &self.fields {
            match v.parse::<u64>() {
                // The parser accepts `b` only first and numeric.
                Ok(n) if *k == BATCH_FIELD => line.batch_mark(n),
                _ => line.field(k, v),
            };
        }
        line.finish();
        buf
    }

    /// The value of `key` parsed as a number (or anything `FromStr`). A leading `+` is
    /// refused: the writer never puts one, and `+7` read as 7 would be a record that a grep for
    /// `=7` misses.
    pub fn num<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, RecordError> {
        let v = self.str(key)?;
        let signed = v.starts_with('+');
        v.parse()
            .ok()
            .filter(|_| !signed)
            .ok_or_else(|| RecordError::BadValue {
                key,
                value: v.to_string(),
                expected: std::any::type_name::<T>(),
            })
    }
}

/// Builds one encoded line. Fields are written in the order they are added.
///
/// ```
/// use mltrader_store::record::{LineBuilder, parse_line};
/// let mut b = LineBuilder::new(7, "join");
/// b.field("player", "Barnard's Kid").field_num("credits", 1000);
/// let line = b.finish();
/// let rec = parse_line(line.as_bytes()).unwrap();
/// assert_eq!(rec.get("player"), Some("Barnard's Kid"));
/// ```
pub struct LineBuilder {
    buf: String,
}

impl LineBuilder {
    /// Starts a line. `kind` must be a valid kind (asserted: kinds are chosen by code, not input).
    pub fn new(seq: u64, kind: &str) -> LineBuilder {
        let mut buf = String::with_capacity(128);
        Self::start(&mut buf, seq, kind);
        LineBuilder { buf }
    }

    /// Starts a line at the end of `buf` (to encode many records into one buffer without copies).
    pub fn start(buf: &mut String, seq: u64, kind: &str) {
        assert!(is_kind(kind), "invalid record kind {kind:?}");
        let _ = write!(buf, "{seq} {kind}");
    }

    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        push_field(&mut self.buf, key, value);
        self
    }

    pub fn field_num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        push_field_display(&mut self.buf, key, value);
        self
    }

    /// Puts the batch mark (tests of the scanner write batches by hand).
    pub fn batch_mark(&mut self, batch: u64) -> &mut Self {
        push_raw_field(&mut self.buf, BATCH_FIELD, batch);
        self
    }

    /// Appends the checksum and the newline; returns the whole line.
    pub fn finish(mut self) -> String {
        finish_line(&mut self.buf, 0);
        self.buf
    }
}

/// Writes one record at the end of a buffer shared by many records (a group-commit batch),
/// without an intermediate copy. Call [`Line::finish`] to seal it with its checksum.
pub struct Line<'a> {
    buf: &'a mut String,
    start: usize,
}

impl<'a> Line<'a> {
    pub fn new(buf: &'a mut String, seq: u64, kind: &str) -> Line<'a> {
        let start = buf.len();
        LineBuilder::start(buf, seq, kind);
        Line { buf, start }
    }

    /// Continues the line that starts at `start` in `buf`, its `seq kind` already written.
    pub fn resume(buf: &'a mut String, start: usize) -> Line<'a> {
        assert!(start <= buf.len(), "a line starts inside its buffer");
        Line { buf, start }
    }

    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        push_field(self.buf, key, value);
        self
    }

    /// Appends fields another line encoded (their ` key=value` text, as [`Line::field`] wrote
    /// it): a projection and its record share the encoding of their fields.
    pub fn encoded(&mut self, fields: &str) -> &mut Self {
        assert!(
            fields.is_empty() || fields.starts_with(' '),
            "encoded fields start with a space"
        );
        self.buf.push_str(fields);
        self
    }

    pub fn num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        push_field_display(self.buf, key, value);
        self
    }

    /// Puts the batch mark; only the log does this, first thing on a batch's first record (and
    /// the audit's tests, which forge logs).
    pub fn batch_mark(&mut self, batch: u64) -> &mut Self {
        push_raw_field(self.buf, BATCH_FIELD, batch);
        self
    }

    /// Appends the checksum and the newline.
    pub fn finish(self) {
        finish_line(self.buf, self.start);
    }
}

/// Appends ` key=value` to `buf`, quoting and escaping the value when needed.
pub fn push_field(buf: &mut String, key: &str, value: &str) {
    assert!(is_key(key), "invalid field key {key:?}");
    assert!(
        key != BATCH_FIELD,
        "the field key {BATCH_FIELD:?} is reserved for the log"
    );
    buf.push(' ');
    buf.push_str(key);
    buf.push('=');
    if is_bare(value) {
        buf.push_str(value);
    } else {
        push_quoted(buf, value);
    }
}

/// Appends ` key=value` for a value whose text is always bare (numbers).
pub fn push_field_display(buf: &mut String, key: &str, value: impl std::fmt::Display) {
    assert!(
        key != BATCH_FIELD,
        "the field key {BATCH_FIELD:?} is reserved for the log"
    );
    push_raw_field(buf, key, value);
}

fn push_raw_field(buf: &mut String, key: &str, value: impl std::fmt::Display) {
    assert!(is_key(key), "invalid field key {key:?}");
    let start = buf.len();
    let _ = write!(buf, " {key}={value}");
    debug_assert!(is_bare(&buf[start + key.len() + 2..]));
}

/// Ends the line that starts at byte `line_start` of `buf`: appends ` ~CRC\n`.
pub fn finish_line(buf: &mut String, line_start: usize) {
    let crc = crc32c::crc32c(&buf.as_bytes()[line_start..]);
    let _ = writeln!(buf, " ~{crc:08x}");
    assert!(
        buf.len() - line_start <= MAX_RECORD_BYTES,
        "record of {} bytes exceeds MAX_RECORD_BYTES",
        buf.len() - line_start
    );
}

fn push_quoted(buf: &mut String, value: &str) {
    buf.push('"');
    for c in value.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(buf, "\\u{{{:x}}}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

fn is_bare_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'+' | b'@' | b'-')
}

/// Whether `value` can be written without quotes.
pub fn is_bare(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(is_bare_byte)
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

fn is_kind(kind: &str) -> bool {
    kind.len() <= MAX_KIND_BYTES && is_key(kind)
}

/// Checks the checksum of one line (with or without its trailing `\n`) and returns the content
/// before ` ~`.
pub fn verify_line(line: &[u8]) -> Result<&[u8], RecordError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    // The limit counts the newline, as `finish_line` does.
    if line.len() + 1 > MAX_RECORD_BYTES {
        return Err(RecordError::TooLong);
    }
    if line.len() < 11 || &line[line.len() - 10..line.len() - 8] != b" ~" {
        return Err(RecordError::NoChecksum);
    }
    let (content, tail) = line.split_at(line.len() - 10);
    let stored = parse_hex32(&tail[2..]).ok_or(RecordError::NoChecksum)?;
    let computed = crc32c::crc32c(content);
    if stored != computed {
        return Err(RecordError::BadChecksum { stored, computed });
    }
    Ok(content)
}

fn parse_hex32(hex: &[u8]) -> Option<u32> {
    if hex.len() != 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in hex {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

/// Parses one line: verifies its checksum, then its fields. Never panics.
pub fn parse_line(line: &[u8]) -> Result<Record<'_>, RecordError> {
    let content = verify_line(line)?;
    let text = std::str::from_utf8(content).map_err(|_| RecordError::NotUtf8)?;
    parse_content(text)
}

/// Parses the content of a line (without checksum). Never panics.
pub fn parse_content(text: &str) -> Result<Record<'_>, RecordError> {
    let (seq_text, rest) = text.split_once(' ').unwrap_or((text, ""));
    let seq = parse_seq(seq_text)?;
    let (kind, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_kind(kind) {
        return Err(RecordError::BadKind(kind.to_string()));
    }
    let mut fields = Vec::with_capacity(8);
    while !rest.is_empty() {
        let (field, after) = parse_field(rest)?;
        let is_mark = field.0 == BATCH_FIELD;
        if is_mark && (!fields.is_empty() || field.1.parse::<u64>().is_err()) {
            return Err(RecordError::BadField(
                format!("{}={}", field.0, field.1),
                "`b` is the batch mark: first, and a number",
            ));
        }
        fields.push(field);
        rest = match after.strip_prefix(' ') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(RecordError::BadField(after.into(), "trailing space")),
            None if after.is_empty() => after,
            None => return Err(RecordError::BadField(after.into(), "expected a space")),
        };
    }
    Ok(Record { seq, kind, fields })
}

fn parse_seq(text: &str) -> Result<u64, RecordError> {
    let ok = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    let bad = || RecordError::BadSeq(text.chars().take(40).collect());
    if !ok || (text.len() > 1 && text.starts_with('0')) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

type Field<'a> = (&'a str, Cow<'a, str>);

fn parse_field(text: &str) -> Result<(Field<'_>, &str), RecordError> {
    let snippet = || text.chars().take(40).collect::<String>();
    // Keys and bare values are a few bytes: a plain byte loop finds their end faster than a
    // general string search (replay spends much of its time here).
    let eq = text
        .bytes()
        .position(|b| b == b'=')
        .ok_or_else(|| RecordError::BadField(snippet(), "no '='"))?;
    let key = &text[..eq];
    if !is_key(key) {
        return Err(RecordError::BadField(snippet(), "bad key"));
    }
    let rest = &text[eq + 1..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let (value, after) = parse_quoted(quoted).ok_or_else(|| {
            RecordError::BadField(snippet(), "bad quoted value (unterminated or bad escape)")
        })?;
        Ok(((key, value), after))
    } else {
        let end = rest.bytes().position(|b| b == b' ').unwrap_or(rest.len());
        let value = &rest[..end];
        if !is_bare(value) {
            return Err(RecordError::BadField(snippet(), "bad bare value"));
        }
        Ok(((key, Cow::Borrowed(value)), &rest[end..]))
    }
}

/// Parses the inside of a quoted value (after the opening quote); returns the value and what
/// follows the closing quote.
fn parse_quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = text.as_bytes();
    // Fast path: no escapes before the closing quote.
    let close = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes[close] == b'"' {
        let value = &text[..close];
        if value.chars().any(char::is_control) {
            return None;
        }
        return Some((Cow::Borrowed(value), &text[close + 1..]));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut code: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let d = chars.next()?.1;
                        if d == '}' {
                            break;
                        }
                        code = code.checked_mul(16)?.checked_add(d.to_digit(16)?)?;
                        digits += 1;
                        if digits > 6 {
                            return None;
                        }
                    }
                    if digits == 0 {
                        return None;
                    }
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(seq: u64, kind: &str, fields: &[(&str, &str)]) -> String {
        let mut b = LineBuilder::new(seq, kind);
        for (k, v) in fields {
            b.field(k, v);
        }
        b.finish()
    }

    #[test]
    fn round_trips_names_with_spaces_quotes_and_unicode() {
        let line = encode(
            3,
            "join",
            &[
                ("player", "Barnard's \"Kid\""),
                ("home", "Alpha Centauri"),
                ("motto", "per aspera\nad astra \u{1F680} \\ é\u{7}"),
                ("empty", ""),
            ],
        );
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one record, one line");
        let rec = parse_line(line.as_bytes()).unwrap();
        assert_eq!(rec.seq, 3);
        assert_eq!(rec.kind, "join");
        assert_eq!(rec.get("player"), Some("Barnard's \"Kid\""));
        assert_eq!(rec.get("home"), Some("Alpha Centauri"));
        assert_eq!(
            rec.get("motto"),
            Some("per aspera\nad astra \u{1F680} \\ é\u{7}")
        );
        assert_eq!(rec.get("empty"), Some(""));
    }

    /// Found by fuzzing (event_codec): `+7` was read as 7.
    #[test]
    fn a_number_with_a_plus_sign_is_refused() {
        let rec_line = encode(1, "refuel", &[("units", "+7"), ("cost", "7")]);
        let rec = parse_line(rec_line.as_bytes()).unwrap();
        assert_eq!(rec.num::<u64>("cost").unwrap(), 7);
        let e = rec.num::<u64>("units").unwrap_err().to_string();
        assert!(e.contains("+7"), "{e}");
    }

    #[test]
    fn a_name_stays_greppable() {
        let line = encode(1, "join", &[("player", "Alpha Centauri Kid")]);
        assert!(line.contains("\"Alpha Centauri Kid\""), "{line}");
    }

    #[test]
    fn rejects_flipped_byte_by_checksum() {
        let line = encode(12, "depart", &[("player", "p12"), ("to", "sol")]);
        let mut bytes = line.into_bytes();
        bytes[5] ^= 0x01;
        assert!(matches!(
            parse_line(&bytes),
            Err(RecordError::BadChecksum { .. })
        ));
    }

    #[test]
    fn rejects_missing_and_malformed_checksums() {
        assert_eq!(parse_line(b"1 join"), Err(RecordError::NoChecksum));
        assert_eq!(parse_line(b""), Err(RecordError::NoChecksum));
        assert_eq!(
            parse_line(b"1 join a=b ~zzzzzzzz"),
            Err(RecordError::NoChecksum)
        );
    }

    fn with_crc(content: &str) -> String {
        format!("{content} ~{:08x}\n", crc32c::crc32c(content.as_bytes()))
    }

    #[test]
    fn rejects_bad_structure_even_with_a_good_checksum() {
        for bad in [
            "x join",
            "01 join",
            "1 Join",
            "1 join a",
            "1 join A=b",
            "1 join a=\"unterminated",
            "1 join a=b  c=d",
            "1 join a=b ",
            "1 join a=\"x\"y",
            "1 join a=sp ace=x=",
            "1 join a=\"\\q\"",
            "1 join a=\"\\u{110000}\"",
            "99999999999999999999 join",
        ] {
            assert!(parse_line(with_crc(bad).as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_batch_mark_is_first_and_numeric_and_survives_a_rewrite() {
        let mut b = LineBuilder::new(4, "join");
        b.batch_mark(7).field("player", "ann");
        let line = b.finish();
        let rec = parse_line(line.as_bytes()).unwrap();
        assert_eq!(rec.to_line(), line);
        for bad in ["4 join player=ann b=7", "4 join b=x player=ann"] {
            assert!(parse_line(with_crc(bad).as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_getters_name_the_field() {
        let line = encode(1, "join", &[("credits", "lots")]);
        let rec = parse_line(line.as_bytes()).unwrap();
        let err = rec.num::<u64>("credits").unwrap_err();
        assert!(err.to_string().contains("credits"), "{err}");
        assert_eq!(
            rec.num::<u64>("fuel"),
            Err(RecordError::MissingField("fuel"))
        );
    }

    proptest! {
        #[test]
        fn any_field_values_round_trip(
            seq in any::<u64>(),
            values in proptest::collection::vec(any::<String>(), 0..6),
        ) {
            let keys = ["a", "c", "d", "e", "f", "g"];
            let fields: Vec<(&str, &str)> = values.iter().enumerate().map(|(i, v)| (keys[i], v.as_str())).collect();
            let line = encode(seq, "test.kind", &fields);
            prop_assert_eq!(line.matches('\n').count(), 1);
            let rec = parse_line(line.as_bytes()).unwrap();
            prop_assert_eq!(rec.seq, seq);
            for (k, v) in &fields {
                prop_assert_eq!(rec.get(k), Some(*v));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_line(&bytes);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_content(text);
                let _ = parse_line(with_crc(text).as_bytes());
            }
        }

        #[test]
        fn any_single_bit_flip_is_detected(bit in 0usize..400, v in any::<String>()) {
            let line = encode(9, "k", &[("v", &v)]);
            let mut bytes = line.into_bytes();
            let content_len = bytes.len() - 1; // the newline is not covered
            let bit = bit % (content_len * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(parse_line(&bytes).is_err());
        }
    }
}
