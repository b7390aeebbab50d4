//! mltrader: a multiplayer space trading game whose server mesh is made of durable, greppable
//! text logs.
//!
//! The layers, from the inside out (each may use the ones above it, never below):
//! - [`sim`]: the game rules; pure and deterministic (no clock, no I/O, no global randomness).
//! - [`store`]: append-only checksummed text logs, group commit, snapshots, recovery.
//! - [`mesh`]: star systems as shards with their own loops, jumps through the transition log.
//! - [`cli`]: the `mltrader` commands, a thin shell over the layers.

pub mod cli;
pub mod mesh;
pub mod net;
pub mod sim;
pub mod store;
