//! The jump protocol's rules, apart from the code that runs it: today its invariants
//! ([`invariants`]), checked where its records are written and where they are read back.
//!
//! Never does I/O and never holds state: it judges what it is shown.

pub mod invariants;
