//! The limits and timeouts of the JetStream backend, in one place, with units in the names.

/// The oldest server that can sync every write (`sync_interval: always` came with 2.10).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// How long a first connection may take before it is an error.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long a publish waits for its ack before it counts as lost and is sent again (same
/// message id, same expected sequence: deduplication makes the retry safe).
pub const ACK_TIMEOUT_MS: u64 = 5_000;

/// How long one batch is retried (lost acks, a stream leader's election: 4-9 s measured)
/// before the log gives up and is poisoned. Far below [`DUPLICATE_WINDOW_S`], so that every
/// retry of a batch is within the window that deduplicates it.
pub const PUBLISH_RETRY_FOR_MS: u64 = 30_000;

/// The pause between two attempts of one batch.
pub const PUBLISH_RETRY_PAUSE_MS: u64 = 200;

/// The stream's duplicate window: a message id seen within it is not stored again.
pub const DUPLICATE_WINDOW_S: u64 = 300;

/// Bytes kept free below the server's `max_payload` for the headers of a message.
pub const HEADER_ROOM_BYTES: usize = 1_024;

/// How long a request to a server's monitoring port may take.
pub const MONITOR_TIMEOUT_MS: u64 = 5_000;

const _: () = assert!(PUBLISH_RETRY_FOR_MS < DUPLICATE_WINDOW_S * 1_000 / 2);
const _: () = assert!(ACK_TIMEOUT_MS < PUBLISH_RETRY_FOR_MS);

/// The galaxy's lease by default (`serve --lease-ms`): a holder that has not renewed it for
/// this long loses it. Short, so that a standby takes over within seconds of a death.
pub const LEASE_MS: u64 = 5_000;

/// The shortest lease accepted: a renewal every quarter of it must fit a KV round trip and a
/// slow disk's fsync with room to spare.
pub const MIN_LEASE_MS: u64 = 1_000;

/// How many renewals fit in one lease: a holder renews every lease / this, so one slow or
/// failed renewal (an election stalls KV writes for seconds) does not lose it.
pub const RENEWALS_PER_LEASE: u64 = 4;

/// How often a standby polls the lease (a compare-and-set create at the bucket's leader, which
/// also says who holds it at which revision). Polling and not a KV watch: the standby must
/// know which of its looks the store answered, since it counts the holder's silence only over
/// those (`mesh::protocol::lease::Watch`).
pub const STANDBY_POLL_MS: u64 = 200;

/// How long past its lease a holder whose renewals the store leaves unanswered (an election:
/// 4-9 s measured; a holder cut off from the store) keeps serving. Its appends stall meanwhile,
/// and fencing refuses them if it was replaced; this bounds how long it may answer reads.
pub const UNANSWERED_GRACE_MS: u64 = 20_000;

const _: () = assert!(RENEWALS_PER_LEASE >= 3);
const _: () = assert!(STANDBY_POLL_MS * 5 <= MIN_LEASE_MS);
const _: () = assert!(MIN_LEASE_MS <= LEASE_MS);

/// How long one attempt at the snapshots' object store (a put, a get, a list, a delete) may
/// take before it is abandoned and tried again: above [`ACK_TIMEOUT_MS`], since a put waits for
/// several acks.
pub const SNAPSHOT_ATTEMPT_TIMEOUT_MS: u64 = 10_000;

/// How long a snapshot's put or get is retried (an election stops the bucket's stream for 4-9
/// s) before it fails; a failed put leaves the previous snapshots in place.
pub const SNAPSHOT_RETRY_FOR_MS: u64 = 30_000;

/// The pause between two attempts at the object store.
pub const SNAPSHOT_RETRY_PAUSE_MS: u64 = 200;

const _: () = assert!(ACK_TIMEOUT_MS < SNAPSHOT_ATTEMPT_TIMEOUT_MS);
const _: () = assert!(SNAPSHOT_ATTEMPT_TIMEOUT_MS < SNAPSHOT_RETRY_FOR_MS);

/// How long a read of a log is tried again when the stream fails it (a request timing out
/// during a leader's election, 4-9 s) before the read fails.
pub const READ_RETRY_FOR_MS: u64 = 30_000;

/// Chunks of the snapshots' bucket that no object refers to (a put cut short) are purged at a
/// node's start once this old: far longer than any put in progress takes.
pub const ORPHAN_CHUNKS_MIN_AGE_S: u64 = 600;

const _: () = assert!(SNAPSHOT_RETRY_FOR_MS / 1_000 * 4 < ORPHAN_CHUNKS_MIN_AGE_S);

/// How long one publish to a pair subject (a jump, or a fence mark) is retried (lost acks, "in
/// process" answers, a stream leader's election: 4-9 s measured) before the caller is told
/// `Unavailable` (whether it is stored is then unknown; publishing again is safe). Far below
/// [`DUPLICATE_WINDOW_S`], so that every retry of a jump is within the window that
/// deduplicates it.
pub const PAIR_PUBLISH_RETRY_FOR_MS: u64 = 30_000;

/// The pause between two attempts at a pair subject (a publish, a read of its last message, a
/// reader's consumer).
pub const PAIR_RETRY_PAUSE_MS: u64 = 200;

/// How often a reader of a pair subject whose consumers keep failing (the stream unavailable)
/// says so in a warning, naming the pair and its position. It never gives up: a pair whose
/// reading ended would leave its jumps unlanded until the unit moves to another node (the
/// mesh reads each pair once per unit start), so it tries again for as long as the sink is
/// open, the pause between tries growing to [`PAIR_READ_MAX_PAUSE_MS`].
pub const PAIR_READ_WARN_EVERY_MS: u64 = 60_000;

/// The longest pause between two consumers of a failing reader (from
/// [`PAIR_RETRY_PAUSE_MS`], doubling): bounds the requests an outage costs per pair.
pub const PAIR_READ_MAX_PAUSE_MS: u64 = 2_000;

const _: () = assert!(PAIR_PUBLISH_RETRY_FOR_MS < DUPLICATE_WINDOW_S * 1_000 / 2);
const _: () = assert!(ACK_TIMEOUT_MS < PAIR_PUBLISH_RETRY_FOR_MS);
const _: () = assert!(PAIR_RETRY_PAUSE_MS * 10 <= PAIR_PUBLISH_RETRY_FOR_MS);

/// The expiry of a pair reader's pull requests (the ordered consumer's `max_expires`): the
/// client sets the idle heartbeat to half of it and re-creates the consumer after two
/// heartbeats missed, so a consumer lost with its server (a leader's death) is replaced within
/// about twice this. async-nats's default (30 s, heartbeats every 15 s) left a reader silent
/// for over 30 s after the stream leader was killed (tests/pairs.rs, seen). Costs one pull
/// request per idle pair per period.
pub const PAIR_READ_EXPIRES_MS: u64 = 2_000;

const _: () = assert!(PAIR_RETRY_PAUSE_MS <= PAIR_READ_MAX_PAUSE_MS);

/// How often a pair reader that delivered nothing since the last check asks the stream leader
/// for its subject's last sequence; a consumer that has delivered nothing over a whole period
/// while that sequence is past its position is replaced by a new one from there. Costs one
/// request per idle pair per period; bounds a silent reader to about twice this.
pub const PAIR_READ_STALL_CHECK_MS: u64 = 2_500;

const _: () = assert!(PAIR_READ_STALL_CHECK_MS * 4 < PAIR_READ_WARN_EVERY_MS);

/// News (gossip, price reports, feed events: `news`) told by this node's systems and not yet
/// handed to the connection. Publishing is a copy into the client's buffer, so the queue only
/// fills while the connection is down or starved; a full queue drops what comes (counted):
/// gossip and reports are repaired by the next round, a feed event is lost to the other
/// nodes' listeners. A second's worth of a busy node's events.
pub const NEWS_OUTBOX_LEN: usize = 16_384;
