//! The events of `GET /v1/events` (server-sent events), as the server sends them and clients
//! read them: the player's own actions, the others in their system, and the stream's own news
//! (`hello`, `lagged`). Not the mesh's feed events, from which the server derives some of these.
//!
//! Owns the shapes; never decides who sees what (the server's event hub does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TradeSide;

/// One event of a player's stream. Serialized as the SSE `data` (JSON); its `type` is also the
/// SSE event name ([`StreamEvent::name`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A market shock began in your system: `good` (null: every good the system makes) tends
    /// toward a new price until the system's tick `until` (`mltrader market` lists it).
    Shock {
        system: String,
        kind: String,
        good: Option<String>,
        until: u64,
        message: String,
    },
    /// First event of every stream: where the player is now.
    Hello {
        player: String,
        /// Null while in a jump.
        system: Option<String>,
    },
    /// A new player appeared at the home system, where you are.
    Joined { player: String, system: String },
    /// Another player landed in your system; `population` counts them too.
    Arrived {
        player: String,
        xfer: String,
        from: String,
        system: String,
        population: usize,
    },
    /// Another player's jump out of your system is committed: they left.
    Left {
        player: String,
        xfer: String,
        system: String,
        to: String,
    },
    /// The player's jump is committed.
    Departed {
        xfer: String,
        from: String,
        to: String,
        travel_ms: u64,
    },
    /// The player is in a jump; `remaining_ms` until the landing is due.
    Progress {
        xfer: String,
        to: String,
        remaining_ms: u64,
    },
    /// The player landed; `population` counts them too.
    Landed {
        xfer: String,
        system: String,
        population: usize,
    },
    /// The player bought fuel.
    Refueled {
        bought_units: u32,
        cost_cr: u64,
        fuel: u32,
        credits: u64,
    },
    /// The player's hull was mended at the station (`repaired_points` for `cost_cr`, credits
    /// that leave the game); `hull` and `credits` after it.
    Repaired {
        repaired_points: u32,
        cost_cr: u64,
        hull: u32,
        credits: u64,
    },
    /// The player traded at their system's market.
    Traded {
        side: TradeSide,
        good: String,
        qty: u32,
        total_cr: u64,
        credits: u64,
    },
    /// The player took goods from a wreck.
    Looted {
        wreck: u64,
        took: BTreeMap<String, u32>,
    },
    /// Another player in your system set a standing order to fire at you.
    Attacked { by: String, system: String },
    /// A ship in your system (yours included) was destroyed; its cargo is wreck `wreck`
    /// (null: it carried nothing). Its pilot respawns with a basic ship at home.
    Destroyed {
        player: String,
        by: String,
        wreck: Option<u64>,
        system: String,
    },
    /// An action of the player was refused.
    Error {
        route: String,
        code: String,
        message: String,
    },
    /// This stream fell behind and missed `missed` events.
    Lagged { missed: u64 },
    /// The player was moved to another instance of their system ("Sol is crowded: you are
    /// now in Sol #2"); nothing else changes for them.
    Instanced {
        system: String,
        instance: u16,
        message: String,
    },
}

impl StreamEvent {
    /// The event's `type`, which is also its SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Hello { .. } => "hello",
            StreamEvent::Joined { .. } => "joined",
            StreamEvent::Arrived { .. } => "arrived",
            StreamEvent::Left { .. } => "left",
            StreamEvent::Departed { .. } => "departed",
            StreamEvent::Progress { .. } => "progress",
            StreamEvent::Landed { .. } => "landed",
            StreamEvent::Refueled { .. } => "refueled",
            StreamEvent::Repaired { .. } => "repaired",
            StreamEvent::Traded { .. } => "traded",
            StreamEvent::Looted { .. } => "looted",
            StreamEvent::Attacked { .. } => "attacked",
            StreamEvent::Destroyed { .. } => "destroyed",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Lagged { .. } => "lagged",
            StreamEvent::Instanced { .. } => "instanced",
            StreamEvent::Shock { .. } => "shock",
        }
    }
}
