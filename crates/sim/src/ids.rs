//! The numbers that count things in the game, each a type of its own so that one cannot be
//! passed where another is meant (a player's version where a tick was meant does not compile).
//!
//! Each is a `u64` underneath, printed (`Display`) and serialized (`serde(transparent)`) as the
//! bare number, so log lines, JSON and state hashes are byte-for-byte what they were when these
//! were plain `u64`. Each has only the operations the rules need: no arithmetic between two
//! different kinds, no `Deref` to `u64`; `.0` is the way out to the wire or a hash.
//!
//! Pure data: never does I/O, never reads a clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The parts every id shares: the derives, `Display` as the bare number, and `next()`.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The one after this. Panics at `u64::MAX`: no counter of the game gets there
            /// (a tick a microsecond would take 584,000 years), so reaching it is a bug.
            #[must_use]
            pub fn next(self) -> $name {
                $name(self.0.checked_add(1).expect(concat!(stringify!($name), " overflows u64")))
            }
        }

        impl fmt::Display for $name {
            /// The bare number, as log records and the wire have always had it.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A system's clock: the number of the tick a system instance is at, stamped by its shard
    /// on every event it logs (`t`). Starts at 0 and only grows; each instance has its own.
    Tick
);

id_type!(
    /// A player's version: how many events have touched the player, in any log. 1 at join, one
    /// more with every event about them ([`crate::player::Player::version`]).
    Version
);

id_type!(
    /// A transfer number: one jump or move of a player out of an instance, numbered from 1 per
    /// instance of origin ([`crate::system::SystemState::next_xfer`]). With the origin it names
    /// one transfer in the whole mesh.
    Xfer
);

id_type!(
    /// An escrow number: one trade asked in an instance and sent to the primary's market,
    /// numbered from 1 per instance ([`crate::system::SystemState::next_escrow`]).
    EscrowId
);

impl Tick {
    /// The tick `ticks` after this one (a jump's arrival after its travel time).
    #[must_use]
    pub fn plus(self, ticks: u64) -> Tick {
        Tick(self.0.checked_add(ticks).expect("Tick overflows u64"))
    }

    /// Ticks from `earlier` to this one; 0 if `earlier` is later.
    pub fn ticks_since(self, earlier: Tick) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_json_are_the_bare_number() {
        assert_eq!(Tick(42).to_string(), "42");
        assert_eq!(Version(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Xfer(9)).unwrap(), "9");
        assert_eq!(
            serde_json::from_str::<EscrowId>("12").unwrap(),
            EscrowId(12)
        );
    }

    #[test]
    fn next_and_plus_count_up() {
        assert_eq!(Version(1).next(), Version(2));
        assert_eq!(Tick(10).plus(5), Tick(15));
        assert_eq!(Tick(15).ticks_since(Tick(10)), 5);
        assert_eq!(Tick(10).ticks_since(Tick(15)), 0);
    }
}
