//! [`Seq`]: a record's sequence number in its log, a type of its own so that it cannot be
//! mixed up with the game's numbers (ticks, versions, transfer numbers) that records carry.
//!
//! Printed (`Display`) and serialized (`serde(transparent)`) as the bare number, as the record
//! format and the event feed have always had it. Pure data: never does I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A record's sequence number in its log: 1 for the first record, one more for each record
/// after it, across the log's segments (the first word of its line). 0 means "none yet" (the
/// durable sequence number of a log with no durable record, a jump not yet committed).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The record after this one. Panics at `u64::MAX`, which no log reaches.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("Seq overflows u64"))
    }

    /// How many records follow `earlier` up to this one (this one included). Panics if
    /// `earlier` is later: a log's sequence numbers only grow.
    pub fn records_since(self, earlier: Seq) -> u64 {
        assert!(earlier <= self, "sequence {earlier} is after {self}");
        self.0 - earlier.0
    }
}

impl fmt::Display for Seq {
    /// The bare number, as the first word of a record's line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_prints_and_counts_as_its_number() {
        assert_eq!(Seq(41).next(), Seq(42));
        assert_eq!(Seq(42).to_string(), "42");
        assert!(Seq(2) > Seq(1));
        assert_eq!(Seq(10).records_since(Seq(4)), 6);
    }
}
