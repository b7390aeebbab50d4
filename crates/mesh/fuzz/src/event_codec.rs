//! Fuzz check for the event codec: a record (`parse_line` of the input, as given and with its
//! checksum fixed up) read as an event of an instance's log (`decode_event`) and as a jump of the
//! transition log (`decode_jump`).
//!
//! Properties: nothing panics; an event decodes only from a record of its own kind; whatever
//! decodes re-encodes (`encode_event`, `encode_jump`) to a record that parses and decodes to the
//! same event or jump; and encoding that again gives the same line (one encoding).
//!
//! Never writes a log: records are bytes here.

use mltrader_mesh::codec::{decode_event, decode_jump, encode_event, encode_jump, event_kind};
use sim::ids::{Tick, Version};
use sim::instance::InstanceId;
use sim::system::Event;
use store::record::{parse_line, Line, Record};

use super::input::{galaxy, instance_and_rest, with_checksums};

/// Checks one fuzz input; returns whether any reading of it decoded (as an event or a jump).
pub fn check(data: &[u8]) -> bool {
    let Some((at, bytes)) = instance_and_rest(data) else {
        return false;
    };
    let mut decoded = check_line(at, bytes);
    if let Some(fixed) = with_checksums(bytes) {
        decoded |= check_line(at, &fixed);
    }
    decoded
}

/// Checks `line` as a record of instance `at`'s log and of the transition log.
fn check_line(at: InstanceId, line: &[u8]) -> bool {
    let Ok(rec) = parse_line(line) else {
        return false;
    };
    let event = check_event(at, &rec);
    let jump = check_jump(&rec);
    event || jump
}

/// The line `encode_event` writes for `event` as record `seq` of `at`'s log.
fn event_line(at: InstanceId, seq: u64, t: Tick, event: &Event, version: Version) -> String {
    let mut buf = String::new();
    let mut line = Line::new(&mut buf, seq, event_kind(event));
    encode_event(&mut line, galaxy(), at, t, event, version);
    line.finish();
    buf
}

fn check_event(at: InstanceId, rec: &Record<'_>) -> bool {
    let g = galaxy();
    let Ok((t, event)) = decode_event(g, at, rec) else {
        return false;
    };
    assert_eq!(
        event_kind(&event),
        rec.kind,
        "decoded as another kind: {event:?}"
    );
    // The version a name-only event's record carries (`v=`); full players carry their own.
    let version = Version(rec.num::<u64>("v").unwrap_or(0));
    let line = event_line(at, rec.seq, t, &event, version);
    let again = parse_line(line.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded event {line:?} does not parse: {e}"));
    let (t_again, event_again) = decode_event(g, at, &again)
        .unwrap_or_else(|e| panic!("re-encoded event {line:?} does not decode: {e}"));
    assert_eq!(t_again, t, "tick changed by a round trip; line {line:?}");
    assert_eq!(
        event_again, event,
        "event changed by a round trip; line {line:?}"
    );
    let line_again = event_line(at, again.seq, t_again, &event_again, version);
    assert_eq!(line_again, line, "one event, two encodings");
    true
}

/// The line `encode_jump` writes for `jump` as record `seq` of the transition log.
fn jump_line(seq: u64, jump: &mltrader_mesh::codec::Jump) -> String {
    let mut buf = String::new();
    let mut line = Line::new(&mut buf, seq, "jump");
    encode_jump(&mut line, galaxy(), jump);
    line.finish();
    buf
}

fn check_jump(rec: &Record<'_>) -> bool {
    let g = galaxy();
    let Ok(jump) = decode_jump(g, rec) else {
        return false;
    };
    let line = jump_line(rec.seq, &jump);
    let again = parse_line(line.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded jump {line:?} does not parse: {e}"));
    let jump_again = decode_jump(g, &again)
        .unwrap_or_else(|e| panic!("re-encoded jump {line:?} does not decode: {e}"));
    assert_eq!(
        jump_again, jump,
        "jump changed by a round trip; line {line:?}"
    );
    assert_eq!(
        jump_line(again.seq, &jump_again),
        line,
        "one jump, two encodings"
    );
    true
}
