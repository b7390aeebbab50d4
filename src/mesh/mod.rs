//! The mesh: star systems as shards, each with its own loop and log, and the handoff of players
//! between them through the transition log.
