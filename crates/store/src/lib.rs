//! Storage: append-only text logs, one checksummed record a line, made durable by group
//! commit, read back by recovery that tells torn tails from corruption, and snapshots that keep
//! restart time bounded.
//!
//! This layer never knows what a record means (that is `sim` and `mesh`); it never reads a
//! clock to decide anything.

pub mod backend;
#[cfg(test)]
mod crash_tests;
pub mod datadir;
pub mod disk;
pub mod lease;
pub mod log;
pub mod record;
pub mod scan;
pub mod seq;
pub mod snapshot;

pub use scan::VisitError;
