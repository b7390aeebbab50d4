//! Every limit of the mesh, in one place, each with its reason (TigerBeetle's `constants.zig`):
//! queue lengths, batch sizes, instances, waits and retries, caches and the size of the largest
//! record the mesh writes. How the limits relate is checked when the crate compiles (the
//! `const _: () = assert!(..)` lines at the end).
//!
//! The modules that use a limit re-export it where it was before (`feed::FEED_LEN`,
//! `checkpoint::CHECKPOINT_EVERY_MS`, ...), so their readers still see it at hand. The size of a
//! record is the store's ([`store::record::MAX_RECORD_BYTES`]); the rules' limits are `sim`'s.
//!
//! Never holds a tunable that is not a bound (the dilation's curve, the instance policy's
//! thresholds stay with their code), and never reads the environment: a limit changes here, in
//! one commit, with its reason.

use std::time::Duration;

use sim::galaxy::MAX_NAME_BYTES;
use sim::goods::MAX_CARGO_TEXT_BYTES;
use sim::instance::MAX_INSTANCES_PER_SYSTEM;
use sim::names::MAX_NAME_CHARS;
use store::record::MAX_RECORD_BYTES;

// Queues between tasks. Each says what a full queue does.

/// Requests a shard's queue holds. A full queue makes its senders wait (backpressure): a
/// request handler, or a departure pipeline handing a jump over. The shard itself never waits
/// on another shard's queue (it `try_send`s, and a full queue skips a gossip round or a report).
pub const SHARD_QUEUE_LEN: usize = 16 * 1024;

/// Prepared jumps a shard's departure pipeline holds before they are committed. A shard
/// reserves a place before it prepares a jump (its loop never waits): when the queue is full a
/// player's jump is refused with `busy` before anything is written, and a move between
/// instances or a respawn is tried again at a later tick. Two batches' worth, so that one
/// batch fills while the other commits.
pub const DEPARTURE_QUEUE_LEN: usize = 2 * MAX_DEPARTURE_BATCH;

/// Most jumps committed in one transition-log batch (one write and one fsync for all of them).
pub const MAX_DEPARTURE_BATCH: usize = 4096;

/// Price reports on their way to the galaxy-wide economy view (one a primary and economy step;
/// each waits there for the gossip delay, a second by default: room for 65k systems reporting
/// every tick at 10 Hz... divided by ten). A full queue drops the report (the shard never
/// waits): the next one from the same system repairs the view.
pub const GALAXY_VIEW_QUEUE_LEN: usize = 65_536;

/// Events a listener of the mesh's feed may fall behind by before it misses some (it is told
/// how many).
pub const FEED_LEN: usize = 65_536;

/// What other nodes of a spread galaxy told this one ([`crate::spread_news`]: gossip, price
/// reports, feed events) and this node has not taken in yet. Taking in is a map lookup and a
/// `try_send`, so the queue only fills if the node's runtime is starved; a full queue drops
/// what comes (the carrier counts it): gossip and reports are repaired by the next round, a
/// feed event is lost to this node's listeners, as a lagging listener of [`FEED_LEN`] loses it.
pub const NEWS_INBOX_LEN: usize = 16_384;

// Work per tick.

/// The most players a primary moves out in one tick (a bound on the tick's work).
pub const MAX_MOVES_PER_TICK: usize = 2_000;

// Instances.

/// The most instances a system may have open by default, the primary included
/// (`serve --max-instances`; the rules' ceiling is [`MAX_INSTANCES_PER_SYSTEM`]).
pub const DEFAULT_MAX_INSTANCES: u16 = 16;

/// How often a primary asks a closing instance again whether it is empty, in milliseconds.
pub const RETIRE_RETRY_MS: u64 = 100;

// Waits and retries.

/// How often routing retries when a player moved between lookup and arrival.
pub const MAX_ROUTE_ATTEMPTS: usize = 4;

/// How long a request waits for a move between two instances of a system (no travel time:
/// a tick or two) to land before it looks again.
pub const MOVE_WAIT: Duration = Duration::from_secs(2);

/// How often the transition log's checkpoint is written by default, in milliseconds.
pub const CHECKPOINT_EVERY_MS: u64 = 5_000;

// The projector (player logs).

/// Player log files kept open between writes, at most (and at most a quarter of the
/// descriptor limit, leaving room for sockets and the system logs). Reopening a player's file
/// for each write was the cost that made jumps slower with more players than files open.
pub const MAX_OPEN_PLAYER_FILES: usize = 16_384;

/// How long lines wait in memory before they are written: long enough that a player who
/// jumps several times a second gets one write for several lines (with thousands of players,
/// opening their files is the projector's main cost), short enough that `history` is current.
pub const PROJECTOR_WRITE_EVERY: Duration = Duration::from_millis(100);

/// Lines waiting beyond this many bytes are written at once.
pub const PROJECTOR_MAX_PENDING_BYTES: usize = 8 << 20;

/// How much of the end of a player log recovery reads to find its last line and a torn tail.
/// A torn tail is at most one round of the projector's lines for one player, far less.
pub const PLAYER_LOG_TAIL_BYTES: u64 = 64 * 1024;

// Reports.

/// The most problems an acknowledgement check lists one by one; the rest are counted in one
/// more line.
pub const MAX_LISTED_PROBLEMS: usize = 100;

// Across nodes (issue 19: `protocol::handover`).

/// Most publishes of one pair subject in flight (sent, not acknowledged): one. With two, a
/// lost `k` and a stored `k + 1` would put the retry of `k` after `k + 1` on the subject.
pub const MAX_PUBLISHES_IN_FLIGHT_PER_PAIR: usize = 1;

/// Most jumps an origin holds in its outbox (prepared, committed, or published and not yet
/// acknowledged): past it the origin refuses new departures (busy) until the pair subjects
/// catch up.
pub const MAX_OUTBOX_JUMPS: usize = 4_096;

/// Most jumps a destination holds read but not landed, per pair subject (what waits for its
/// travel time).
pub const MAX_UNLANDED_PER_PAIR: usize = 4_096;

// Records.

/// Digits of the largest `u64`.
const U64_DIGITS: usize = 20;

/// An upper bound on the bytes of the largest record the mesh writes: a `jump` of the
/// transition log, which carries a player's whole state. Two instance names (a system's name
/// and ` #n`), a player's name (each char at most 4 bytes in UTF-8, and escaped at most once
/// more), the cargo text, a dozen numbers, and the field names, sequence and checksum.
pub const MAX_JUMP_RECORD_BYTES: usize = 512
    + 2 * (MAX_NAME_BYTES + 8)
    + 2 * (4 * MAX_NAME_CHARS)
    + 2 * MAX_CARGO_TEXT_BYTES
    + 16 * U64_DIGITS;

// How the limits relate, checked at compile time.

// A batch of departures fits in the queue that feeds it, with room for the next one.
const _: () = assert!(MAX_DEPARTURE_BATCH < DEPARTURE_QUEUE_LEN);
// One tick's moves out of a primary fit in its departure queue.
const _: () = assert!(MAX_MOVES_PER_TICK <= DEPARTURE_QUEUE_LEN);
// The pipeline hands a whole batch over to one destination: it fits in that shard's queue.
const _: () = assert!(MAX_DEPARTURE_BATCH <= SHARD_QUEUE_LEN);
// The default instance count is one the rules allow, and at least the primary.
const _: () =
    assert!(1 <= DEFAULT_MAX_INSTANCES && DEFAULT_MAX_INSTANCES <= MAX_INSTANCES_PER_SYSTEM);
// The largest player's jump record is a record the store accepts (and reads back).
const _: () = assert!(MAX_JUMP_RECORD_BYTES <= MAX_RECORD_BYTES);
// A player's torn tail (one projector round for one player) fits in the tail recovery reads.
const _: () = assert!(MAX_JUMP_RECORD_BYTES as u64 <= PLAYER_LOG_TAIL_BYTES);
// Order per pair subject rests on one publish in flight per pair.
const _: () = assert!(MAX_PUBLISHES_IN_FLIGHT_PER_PAIR == 1);
// A destination can hold, waiting, every jump an origin may have outstanding on one pair.
const _: () = assert!(MAX_OUTBOX_JUMPS <= MAX_UNLANDED_PER_PAIR);
// The feed can hold every event of a full shard queue.
const _: () = assert!(SHARD_QUEUE_LEN <= FEED_LEN);

/// How long a unit's start waits for its outgoing pair subjects to be fenced, in milliseconds,
/// before it gives up (and its node releases the lease, to claim it again later). A pair
/// subject in a region out of reach would otherwise hold the start, and the node's round with
/// it, for the whole publish retry (seconds): the round also renews the node's other leases.
pub const UNIT_FENCE_WAIT_MS: u64 = 2_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_jump, Jump};
    use sim::galaxy::Galaxy;
    use sim::goods::{Cargo, Good};
    use sim::ids::{Tick, Version, Xfer};
    use sim::instance::InstanceId;
    use sim::player::Player;
    use store::record::Line;
    use store::seq::Seq;

    /// The bound is real: the largest jump the mesh can write (the longest system names of the
    /// galaxy, the last instance, the longest name in 4-byte characters, every good and every
    /// number at its largest) is within [`MAX_JUMP_RECORD_BYTES`].
    #[test]
    fn the_largest_jump_record_is_within_its_bound() {
        let g = Galaxy::default_galaxy();
        let longest = g.ids().max_by_key(|&s| g.slug(s).len()).unwrap();
        let mut cargo = Cargo::new();
        for good in Good::ALL {
            cargo.add(good, u64::from(u32::MAX)).unwrap();
        }
        let at = InstanceId::new(longest, MAX_INSTANCES_PER_SYSTEM);
        let jump = Jump {
            from: at,
            xfer: Xfer(u64::MAX),
            to: at,
            t: Tick(u64::MAX),
            travel_ticks: u64::MAX,
            player: Player {
                name: "\u{1D538}".repeat(MAX_NAME_CHARS),
                credits: u64::MAX,
                fuel: u32::MAX,
                fuel_capacity: u32::MAX,
                hull: u32::MAX,
                hold: u32::MAX,
                cargo,
                version: Version(u64::MAX),
            },
            tseq: Seq(u64::MAX),
        };
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, u64::MAX, "jump");
        encode_jump(&mut line, &g, &jump);
        line.finish();
        assert!(
            buf.len() <= MAX_JUMP_RECORD_BYTES,
            "the largest jump record is {} bytes, over its bound of {MAX_JUMP_RECORD_BYTES}: {buf}",
            buf.len()
        );
    }
}
