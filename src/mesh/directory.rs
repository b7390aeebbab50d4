//! Where each player is, for routing requests, and who waits for a landing.
//!
//! This is a routing hint, not game state: the shard that owns a player is the authority, and a
//! request sent to the wrong shard is answered "not here" and routed again. Shards write it only
//! after the event that moved a player is durable (departures: when prepared, so new requests
//! stop going to the old system). Never read by the simulation.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use tokio::sync::oneshot;

use crate::sim::galaxy::SystemId;

/// Where a player is, as far as routing knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In a system.
    In(SystemId),
    /// Between systems: jump `xfer` of system `from`, towards `to`.
    Jumping {
        from: SystemId,
        xfer: u64,
        to: SystemId,
    },
}

/// A landing, as told to whoever waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Landed {
    pub system: SystemId,
    /// Players in the system right after the landing (the lander included).
    pub population: usize,
}

/// The routing table and the landing waiters.
#[derive(Default)]
pub struct Directory {
    /// std RwLock: held for a map lookup only, never across an await.
    locations: RwLock<HashMap<String, Location>>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Landed>>>>,
}

impl Directory {
    pub fn get(&self, name: &str) -> Option<Location> {
        self.locations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    pub fn set(&self, name: &str, at: Location) {
        let mut map = self.locations.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(name) {
            Some(slot) => *slot = at,
            None => {
                map.insert(name.to_string(), at);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.locations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a durable landing and wakes whoever waits for it.
    pub fn landed(&self, name: &str, landed: Landed) {
        self.set(name, Location::In(landed.system));
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        for w in waiters.into_iter().flatten() {
            let _ = w.send(landed);
        }
    }

    /// A receiver told of the player's next landing.
    pub fn wait_landing(&self, name: &str) -> oneshot::Receiver<Landed> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .push(tx);
        rx
    }
}
