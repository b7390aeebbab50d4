//! The game rules: galaxy, star systems, players, ships. Pure and deterministic: a system's
//! next state is a function of its state and its inputs only. This layer never does I/O, never
//! reads a clock, and never imports `store`, `mesh` or `cli`.

pub mod apply_error;
pub mod combat;
pub mod economy;
pub mod galaxy;
pub mod goods;
pub mod ids;
pub mod instance;
pub mod ledger;
pub mod market;
pub mod names;
pub mod player;
pub mod rng;
pub mod rules;
pub mod shock;
pub mod system;
