//! The jump protocol's core, apart from the code that runs it: the decisions of the handoff,
//! as pure state machines and functions that take inputs (a jump handed over, a tick, records
//! durable up to a point, the records recovery read) and say what to do (land now, commit,
//! record these settling events, hand these jumps again).
//!
//! Two drivers run it: the shards on tokio with files ([`crate::shard`],
//! [`crate::departures`], [`crate::recovery`]) and the deterministic simulator (`crates/dst`),
//! which drives it under injected crashes and disk faults, seed by seed.
//!
//! - [`arrivals`]: a destination's queue of committed jumps, and the idempotent landing;
//! - [`commit`]: the departure pipeline's commit point (both records durable);
//! - [`deal`]: which node serves which unit (rendezvous hashing over the live nodes);
//! - [`handover`]: a jump between units on different nodes (the origin's outbox of committed
//!   jumps and their pair subjects, the destination's reading of them and its snapshot);
//! - [`lease`]: the galaxy's lease on a shared log store: renewal, fencing, takeover;
//! - [`members`]: which nodes are live, judged from polls of their keys (silence counted only
//!   over polls the store answered);
//! - [`promote`]: a surviving region taking a lost region's systems from its copy (the epoch
//!   to take, the reconcile with the survivor's logs, the loss report);
//! - [`settle`]: what recovery completes, voids, cancels or hands over again;
//! - [`invariants`]: each step's invariant, checked where records are written and read back;
//! - [`bugs`]: test-only switches that re-introduce known bugs (feature `bug-switches`).
//!
//! Never does I/O, never reads a clock, never spawns: whatever it needs is given to it.

pub mod arrivals;
pub mod bugs;
pub mod commit;
pub mod deal;
pub mod handover;
pub mod invariants;
pub mod lease;
pub mod members;
pub mod promote;
pub mod settle;
