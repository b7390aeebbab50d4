//! Keeps restart time bounded for the transition log: tracks which committed jumps are not
//! yet settled (their `depart.done` durable in the origin's log and their `arrive` durable in
//! the destination's), and writes a checkpoint `snapshots/_transitions.<seq>.snap` saying
//! where recovery may start reading the transition log: every jump before that point is
//! settled, so recovery has nothing to learn from it.
//!
//! The departure pipeline registers a batch under the tracker's lock while it appends it, so a
//! checkpoint can never skip a jump that was appended but not yet registered. Never decides a
//! jump's fate; only says how far back recovery must read.

use std::collections::BTreeMap;
use std::sync::Mutex;

use store::backend::SnapshotStore;
use store::log::{Log, LogError, Position};
use store::seq::Seq;
use store::snapshot::{self, SnapshotMeta};

/// Name of the transition log's checkpoints in `snapshots/` (no system slug starts with `_`).
pub const TRANSITIONS_CHECKPOINT: &str = "_transitions";

pub use super::limits::CHECKPOINT_EVERY_MS;

/// What must still happen before a jump is settled.
pub const ORIGIN_DONE: u8 = 1;
pub const LANDED: u8 = 2;

#[derive(Default)]
struct Inner {
    /// Unsettled jumps by transition-log sequence number: where recovery must start to see
    /// them, and what they still wait for (bits of ORIGIN_DONE and LANDED).
    pending: BTreeMap<Seq, (Position, u8)>,
    /// The last checkpoint written.
    written: Option<u64>,
}

/// The tracker. One per mesh.
#[derive(Default)]
pub struct Checkpoint {
    inner: Mutex<Inner>,
}

impl Checkpoint {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch of jumps to the transition log with `append`, and registers them as
    /// unsettled, both under the tracker's lock. Returns the first and last sequence numbers.
    pub fn append_registered(
        &self,
        append: impl FnOnce() -> Result<Option<(Position, Seq)>, LogError>,
        count: usize,
    ) -> Result<Option<(Seq, Seq)>, LogError> {
        let mut inner = self.lock();
        let Some((start, last)) = append()? else {
            return Ok(None);
        };
        let first = Seq(start.next_seq);
        assert_eq!(last.0 + 1 - first.0, count as u64, "one record per jump");
        for seq in first.0..=last.0 {
            inner
                .pending
                .insert(Seq(seq), (start, ORIGIN_DONE | LANDED));
        }
        Ok(Some((first, last)))
    }

    /// Registers a jump found unsettled by recovery (it waits for `waits`), readable from `at`.
    pub fn register(&self, tseq: Seq, at: Position, waits: u8) {
        self.lock().pending.insert(tseq, (at, waits));
    }

    /// Notes that jump `tseq` no longer waits for `what`.
    pub fn settle(&self, tseq: Seq, what: u8) {
        let mut inner = self.lock();
        if let Some((_, waits)) = inner.pending.get_mut(&tseq) {
            *waits &= !what;
            if *waits == 0 {
                inner.pending.remove(&tseq);
            }
        }
    }

    /// Jumps not yet settled.
    pub fn unsettled(&self) -> usize {
        self.lock().pending.len()
    }

    /// Writes a checkpoint if recovery could start later than the last one says.
    pub fn write(&self, transitions: &Log, snapshots: &dyn SnapshotStore) -> Result<(), String> {
        let mut inner = self.lock();
        let at = match inner.pending.first_key_value() {
            Some((_, (pos, _))) => *pos,
            None => transitions.position(),
        };
        let upto = at.next_seq - 1;
        if upto == 0 || inner.written.is_some_and(|w| w >= upto) {
            return Ok(());
        }
        // Everything before `at` is settled, hence durable; no need to wait for the log.
        let meta = SnapshotMeta {
            name: TRANSITIONS_CHECKPOINT.to_string(),
            upto_seq: upto,
            log_offset: at.offset,
            log_line: at.line,
            state_hash: 0,
        };
        let bytes = snapshot::encode(&meta, |_| {});
        inner.written = Some(upto);
        drop(inner);
        snapshots.put(&meta, &bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: u64) -> Position {
        Position {
            next_seq: seq,
            offset: seq * 100,
            line: seq,
        }
    }

    #[test]
    fn a_jump_is_settled_only_when_done_and_landed() {
        let c = Checkpoint::default();
        c.register(Seq(3), pos(3), ORIGIN_DONE | LANDED);
        c.register(Seq(4), pos(3), LANDED);
        c.settle(Seq(3), LANDED);
        assert_eq!(c.unsettled(), 2);
        c.settle(Seq(4), LANDED);
        assert_eq!(c.unsettled(), 1);
        c.settle(Seq(3), ORIGIN_DONE);
        assert_eq!(c.unsettled(), 0);
    }
}
