//! `mltrader export` of a spread galaxy (issue 19): the jumps handed between units on the pair
//! subjects (`mlt.jump.<from>.<to>` of stream `MLT_JUMPS`) written as `jumps.log` of the export,
//! which is what marks a directory as a spread galaxy's for `mltrader check`
//! (`mesh::audit`'s module comment).
//!
//! `jumps.log` is a log like the others (`store::record` lines, checksummed, numbered 1..): one
//! `jump` record per transfer id, as the transition log writes it (`mesh::codec::encode_jump`),
//! sorted by origin instance and transfer number. A jump stored twice on its pair subject (a
//! republish past the duplicate window) is written once and counted; two copies that disagree
//! on the player or the destination are a problem. Fence marks (`lease` records) are skipped;
//! every message of a pair subject is decoded by `nats::pairs::decode_message`, the readers'
//! own decoder, and anything else is a problem naming the subject and the stream sequence.
//!
//! The writers' epochs are checked per pair subject as the logs' are
//! ([`nats::export::EpochCheck`]): a message under an older epoch after a newer fence mark is a
//! zombie message accepted (exit status 1).
//!
//! **The cut.** The logs are copied up to one sequence of the logs' stream first, the pair
//! subjects read after: every `depart.done` or `arrive` copied answers a jump published before
//! it, so `jumps.log` holds it. A jump published after the logs' cut may have its `depart`
//! past the cut too: only jumps whose `depart` the exported origin log holds are written (its
//! highest transfer number departed, counted while the log is exported); the others are counted
//! as `after_cut` and written by a later pass. So every jump of `jumps.log` has its `depart`
//! in the export, and a published jump without one is a problem for `check`.
//!
//! Regenerated whole at each pass (the stream read from its start, the file written
//! atomically), skipped when neither the stream nor the exported departs changed: simple and
//! always consistent, at the cost of reading every jump again (fine at the tens of thousands of
//! jumps measured; a stream that grows without compaction makes it slower, see docs/NATS.md).
//!
//! Never writes to a stream, never creates one, never judges a game rule (`check` does).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use mesh::codec::{encode_jump, xfer_text, Jump};
use mesh::protocol::handover::{Pair, PairSeq};
use nats::export::{EpochCheck, JumpsReader, PairMessage};
use nats::pairs::{decode_message, JUMPS_STREAM, JUMP_KIND};
use sim::galaxy::Galaxy;
use sim::ids::Xfer;
use sim::instance::InstanceId;
use store::datadir::DataDir;
use store::disk::write_atomic;
use store::record::Line;

/// The most problems the report lists (all are counted).
pub const JUMP_PROBLEMS_LISTED_MAX: usize = 20;

/// What the last pass wrote to `jumps.log`, and what it met on the pair subjects.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JumpsReport {
    /// The jumps' stream's last sequence the pass read up to.
    pub stream_seq: u64,
    /// Messages read (jumps and fence marks).
    pub messages: u64,
    /// Jumps written to `jumps.log`.
    pub jumps: u64,
    /// Fence marks (`lease` records) skipped.
    pub fence_marks: u64,
    /// Jumps stored more than once (a republish past the duplicate window), written once.
    pub duplicates: u64,
    /// Jumps published after the logs' cut (their `depart` is not exported yet): left for the
    /// next pass.
    pub after_cut: u64,
    /// Messages written by a writer that had lost its lease, and accepted.
    pub zombie_messages: u64,
    /// Per pair subject: its writers' epochs, checked.
    pub subjects: BTreeMap<String, EpochCheck>,
    /// Problems (the first [`JUMP_PROBLEMS_LISTED_MAX`]): malformed messages, copies that
    /// disagree, zombie messages.
    pub problems: Vec<String>,
    /// Problems in all.
    pub problem_count: u64,
}

impl JumpsReport {
    fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < JUMP_PROBLEMS_LISTED_MAX {
            self.problems.push(what);
        }
    }
}

/// What a pass's `jumps.log` depends on: when neither changed, the file is still right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JumpsInput {
    stream_seq: u64,
    departed: BTreeMap<InstanceId, u64>,
}

/// Writes `jumps.log` from the pair subjects up to the stream's last sequence now, keeping the
/// jumps whose origin's exported log has departed them (`departed`: the highest transfer number
/// of a `depart` per origin instance). Skipped (None) when `last` is the same input.
pub fn export_jumps(
    reader: &JumpsReader,
    datadir: &DataDir,
    galaxy: &Galaxy,
    departed: BTreeMap<InstanceId, u64>,
    batch_bytes: usize,
    last: Option<&JumpsInput>,
) -> anyhow::Result<Option<(JumpsReport, JumpsInput)>> {
    let input = JumpsInput {
        stream_seq: reader.last_sequence()?,
        departed,
    };
    if last == Some(&input) && datadir.jumps_log().exists() {
        return Ok(None);
    }
    let mut report = JumpsReport {
        stream_seq: input.stream_seq,
        ..JumpsReport::default()
    };
    let mut jumps: BTreeMap<(InstanceId, Xfer), Jump> = BTreeMap::new();
    let mut after = 0;
    loop {
        let batch = reader.messages_after(after, input.stream_seq, batch_bytes.max(1))?;
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            assert!(
                m.message.stream_seq > after,
                "{JUMPS_STREAM}: messages come in order"
            );
            after = m.message.stream_seq;
            read_message(galaxy, reader.prefix(), m, &mut jumps, &mut report);
        }
    }
    let before = jumps.len();
    jumps.retain(|(from, xfer), _| input.departed.get(from).is_some_and(|&n| xfer.0 <= n));
    report.after_cut = (before - jumps.len()) as u64;
    report.jumps = jumps.len() as u64;
    write_jumps_log(datadir, galaxy, jumps.values())?;
    report.zombie_messages = report.subjects.values().map(|c| c.zombie_messages).sum();
    let epoch_problems: Vec<String> = report
        .subjects
        .values()
        .flat_map(|c| c.problems.iter().cloned())
        .collect();
    for p in epoch_problems {
        report.problem(p);
    }
    Ok(Some((report, input)))
}

/// One message of a pair subject: its writer's epoch checked, then the jump kept (the first
/// copy of its transfer id), a fence mark counted, or a problem.
fn read_message(
    galaxy: &Galaxy,
    prefix: &str,
    m: &PairMessage,
    jumps: &mut BTreeMap<(InstanceId, Xfer), Jump>,
    report: &mut JumpsReport,
) {
    report.messages += 1;
    report
        .subjects
        .entry(m.subject.clone())
        .or_default()
        .message(&m.subject, &m.message);
    let at = m.message.stream_seq;
    let Some(pair) = pair_of(galaxy, prefix, &m.subject) else {
        report.problem(format!(
            "{}, stream {JUMPS_STREAM} sequence {at}: not the pair subject of two systems of this galaxy",
            m.subject
        ));
        return;
    };
    let arrived = match decode_message(galaxy, &m.subject, pair, PairSeq(at), &m.message.payload) {
        Ok(Some(arrived)) => arrived,
        Ok(None) => {
            report.fence_marks += 1;
            return;
        }
        Err(e) => {
            report.problem(e.to_string());
            return;
        }
    };
    let jump = arrived.jump;
    match jumps.entry((jump.from, jump.xfer)) {
        Entry::Vacant(slot) => {
            slot.insert(jump);
        }
        Entry::Occupied(first) => {
            report.duplicates += 1;
            let first = first.get();
            if first.player != jump.player || first.to != jump.to {
                report.problem(format!(
                    "{}, stream {JUMPS_STREAM} sequence {at}: jump {} stored again with another \
                     player or destination than its first copy ('{}' to {}, then '{}' to {})",
                    m.subject,
                    xfer_text(galaxy, jump.from, jump.xfer),
                    first.player.name,
                    first.to.slug(galaxy),
                    jump.player.name,
                    jump.to.slug(galaxy)
                ));
            }
        }
    }
}

/// The pair of systems of pair subject `subject` (under `prefix`: `mlt.jump.`, or a region's
/// `mlt.<region>.jump.`), if both are of `galaxy`.
fn pair_of(galaxy: &Galaxy, prefix: &str, subject: &str) -> Option<Pair> {
    let (from, to) = nats::subject::to_pair_with(prefix, subject)?;
    Some(Pair {
        from: galaxy.by_slug(&from)?,
        to: galaxy.by_slug(&to)?,
    })
}

/// Writes `jumps` (in order) as `jumps.log`, numbered from 1, atomically.
fn write_jumps_log<'a>(
    datadir: &DataDir,
    galaxy: &Galaxy,
    jumps: impl Iterator<Item = &'a Jump>,
) -> anyhow::Result<()> {
    let mut buf = String::new();
    for (i, jump) in jumps.enumerate() {
        let mut line = Line::new(&mut buf, i as u64 + 1, JUMP_KIND);
        encode_jump(&mut line, galaxy, jump);
        line.finish();
    }
    let path = datadir.jumps_log();
    write_atomic(&path, buf.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// The transfer number of a `depart` record's `xfer` field (`sol.2:7` is 7).
pub fn departed_number(xfer: &str) -> Option<u64> {
    xfer.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departs_transfer_number_is_read_from_its_id() {
        assert_eq!(departed_number("sol:7"), Some(7));
        assert_eq!(departed_number("sol.2:41"), Some(41));
        assert_eq!(departed_number("sol"), None);
        assert_eq!(departed_number("sol:x"), None);
    }
}
