//! What happened in one seed, step by step: a line per action, tagged with the player and the
//! jump it touched, so a failure can show the last steps of the player concerned. Its hash is
//! part of the run's digest (same seed, same trace).
//!
//! Never reads a clock; never decides anything.

use sim::ids::Xfer;
use sim::instance::InstanceId;
use xxhash_rust::xxh3::Xxh3;

/// How many lines of a player's story a failure shows.
pub const STORY_LINES: usize = 30;

/// How many of the last lines, whoever they touched, a failure shows after the story.
pub const CONTEXT_LINES: usize = 12;

/// One line of the trace.
#[derive(Clone, Debug)]
pub struct Entry {
    pub step: u64,
    pub who: Option<String>,
    pub jump: Option<(InstanceId, Xfer)>,
    pub text: String,
}

/// The trace of one seed, and its running hash.
pub struct Trace {
    entries: Vec<Entry>,
    hash: Xxh3,
    /// Keep the lines (a replay with `--trace`, or any run: a failure needs them).
    keep: bool,
}

impl Trace {
    pub fn new(keep: bool) -> Trace {
        Trace {
            entries: Vec::new(),
            hash: Xxh3::new(),
            keep,
        }
    }

    pub fn push(
        &mut self,
        step: u64,
        who: Option<&str>,
        jump: Option<(InstanceId, Xfer)>,
        text: String,
    ) {
        self.hash.update(&step.to_le_bytes());
        self.hash.update(text.as_bytes());
        self.hash.update(b"\n");
        if self.keep {
            self.entries.push(Entry {
                step,
                who: who.map(str::to_string),
                jump,
                text,
            });
        }
    }

    pub fn digest(&self) -> u64 {
        self.hash.digest()
    }

    pub fn all(&self) -> &[Entry] {
        &self.entries
    }

    /// The last [`STORY_LINES`] lines about `player` or a jump of theirs (and every crash and
    /// restart among them: they explain what a player lost).
    pub fn story(&self, player: &str) -> Vec<&Entry> {
        let jumps: std::collections::BTreeSet<(InstanceId, Xfer)> = self
            .entries
            .iter()
            .filter(|e| e.who.as_deref() == Some(player))
            .filter_map(|e| e.jump)
            .collect();
        let touches = |e: &&Entry| {
            e.who.as_deref() == Some(player)
                || e.jump.is_some_and(|j| jumps.contains(&j))
                || e.text.starts_with("CRASH")
                || e.text.starts_with("RESTART")
        };
        let mine: Vec<&Entry> = self.entries.iter().filter(touches).collect();
        let from = mine.len().saturating_sub(STORY_LINES);
        mine[from..].to_vec()
    }

    /// The last `n` lines, whoever they are about.
    pub fn last(&self, n: usize) -> Vec<&Entry> {
        let from = self.entries.len().saturating_sub(n);
        self.entries[from..].iter().collect()
    }
}
