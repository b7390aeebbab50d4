//! Where each player is, for routing requests, and who waits for a landing.
//!
//! This is a routing hint, not game state: the shard that owns a player is the authority, and a
//! request sent to the wrong shard is answered "not here" and routed again. Shards write it only
//! once the move is durable: a departure when prepared (so new requests stop going to the old
//! system), a landing as soon as it is applied (its `jump` record is durable, and recovery
//! lands every committed jump). Never read by the simulation.
//!
//! Each update carries the player's version after the event that moved them, and an older
//! update never overwrites a newer one: a shard may move a player on (prepare a jump) before its
//! acker has told of their landing, and that late landing must not send requests back there.
//!
//! It also resolves a name as a person may type it (`attack ann` for `Ann`): by the names'
//! uniqueness key ([`sim::names::key`]), when exactly one player holds that key.
//!
//! It knows players by instance ([`Place`]): a request goes to the shard of the instance the
//! player is in. Callers that only care about star systems (the API) see a [`SystemPlace`], in
//! which a move between two instances of one system is no jump: the player stays in the system.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use tokio::sync::oneshot;

use sim::galaxy::SystemId;
use sim::ids::{Version, Xfer};
use sim::instance::InstanceId;
use sim::names;

/// Where a player is, by star system, as far as routing knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemPlace {
    /// In a system (in any of its instances, or moving between two of them).
    In(SystemId),
    /// Between systems: jump `xfer` of system `from`, towards `to`.
    Jumping {
        from: SystemId,
        xfer: Xfer,
        to: SystemId,
    },
}

/// Where a player is, by instance: what routing uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In this instance of a system.
    In(InstanceId),
    /// In jump `xfer` of instance `from`, towards instance `to` (a move between instances of
    /// one system when both are of the same system).
    Jumping {
        from: InstanceId,
        xfer: Xfer,
        to: InstanceId,
    },
}

impl Place {
    /// The same place by star system.
    pub fn system_place(self) -> SystemPlace {
        match self {
            Place::In(at) => SystemPlace::In(at.system),
            Place::Jumping { from, to, .. } if from.system == to.system => {
                SystemPlace::In(from.system)
            }
            Place::Jumping { from, xfer, to } => SystemPlace::Jumping {
                from: from.system,
                xfer,
                to: to.system,
            },
        }
    }

    /// Whether this is a move between two instances of one system.
    pub fn is_move(self) -> bool {
        matches!(self, Place::Jumping { from, to, .. } if from.system == to.system)
    }
}

/// A landing, as told to whoever waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Landed {
    pub system: SystemId,
    /// The instance of the system landed in (jumps land in the primary, 1; moves in others).
    pub instance: u16,
    /// Players in the instance right after the landing (the lander included).
    pub population: usize,
}

/// The routing table and the landing waiters.
#[derive(Default)]
pub struct Directory {
    /// Each player's place and the version it was set at. std RwLock: held for a map lookup
    /// only, never across an await.
    places: RwLock<HashMap<String, (Place, Version)>>,
    /// The names of the players routing knows, by uniqueness key: more than one only for names
    /// taken before the rules on look-alikes. std RwLock, like `places`.
    by_key: RwLock<HashMap<String, BTreeSet<String>>>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Landed>>>>,
}

impl Directory {
    /// Where a player is, by star system.
    pub fn get(&self, name: &str) -> Option<SystemPlace> {
        self.place(name).map(Place::system_place)
    }

    /// Where a player is, by instance.
    pub fn place(&self, name: &str) -> Option<Place> {
        self.places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|(at, _)| *at)
    }

    /// Notes that the player is at `at` since the event that gave them `version` (ignored if
    /// routing knows of a later one).
    pub fn set(&self, name: &str, at: Place, version: Version) {
        let mut map = self.places.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(name) {
            Some(slot) if slot.1 <= version => *slot = (at, version),
            Some(_) => {}
            None => {
                map.insert(name.to_string(), (at, version));
                drop(map);
                self.by_key
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(names::key(name))
                    .or_default()
                    .insert(name.to_string());
            }
        }
    }

    /// The player `typed` means: that name if routing knows it, else the one player whose
    /// name looks the same (case, look-alike characters, NFC). `None` if none does, or if
    /// several do (names taken before the rules on look-alikes: the exact name is needed).
    pub fn resolve(&self, typed: &str) -> Option<String> {
        let known = self.places.read().unwrap_or_else(|e| e.into_inner());
        if known.contains_key(typed) {
            return Some(typed.to_string());
        }
        drop(known);
        let by_key = self.by_key.read().unwrap_or_else(|e| e.into_inner());
        match by_key.get(&names::key(typed)) {
            Some(holders) if holders.len() == 1 => holders.first().cloned(),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.places.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a landing (the player's version after it: `version`) and wakes whoever
    /// waits for it.
    pub fn landed(&self, name: &str, landed: Landed, version: Version) {
        let at = InstanceId {
            system: landed.system,
            n: landed.instance,
        };
        self.set(name, Place::In(at), version);
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        for w in waiters.into_iter().flatten() {
            let _ = w.send(landed);
        }
    }

    /// The player left this node (a jump towards a unit another node runs) as of `version`:
    /// routing forgets them unless it knows a newer place (they landed back here). Whoever
    /// waits here for their landing is let go (the receiver sees its sender dropped).
    pub fn left(&self, name: &str, version: Version) {
        let mut map = self.places.write().unwrap_or_else(|e| e.into_inner());
        if map.get(name).is_none_or(|slot| slot.1 > version) {
            return;
        }
        map.remove(name);
        drop(map);
        let mut by_key = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        let key = names::key(name);
        if let Some(holders) = by_key.get_mut(&key) {
            holders.remove(name);
            if holders.is_empty() {
                by_key.remove(&key);
            }
        }
        drop(by_key);
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Forgets every player in `system` or on their way to it (its unit stopped running here).
    pub fn forget_system(&self, system: SystemId) {
        let gone: Vec<(String, Version)> = self
            .places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (place, _))| match place {
                Place::In(at) => at.system == system,
                Place::Jumping { to, .. } => to.system == system,
            })
            .map(|(name, (_, v))| (name.clone(), *v))
            .collect();
        for (name, version) in gone {
            self.left(&name, version);
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

#[cfg(test)]
mod tests {
    use super::*;
    use sim::ids::Version;

    #[test]
    fn a_name_resolves_up_to_case_and_look_alikes_when_unambiguous() {
        let d = Directory::default();
        let sol = Place::In(InstanceId::primary(SystemId(0)));
        d.set("Bob", sol, Version(1));
        d.set("Zo\u{00EB}", sol, Version(1));
        assert_eq!(d.resolve("Bob").as_deref(), Some("Bob"));
        assert_eq!(d.resolve("bob").as_deref(), Some("Bob"));
        assert_eq!(d.resolve("B0B").as_deref(), Some("Bob"));
        assert_eq!(d.resolve("zoe\u{0308}").as_deref(), Some("Zo\u{00EB}"));
        assert_eq!(d.resolve("Rob"), None);
        // Two names of one key (taken before the rules): only the exact names resolve.
        d.set("Ann", sol, Version(1));
        d.set("ann", sol, Version(1));
        assert_eq!(d.resolve("ann").as_deref(), Some("ann"));
        assert_eq!(d.resolve("Ann").as_deref(), Some("Ann"));
        assert_eq!(d.resolve("ANN"), None, "ambiguous");
    }

    #[test]
    fn a_late_landing_never_overwrites_a_later_move() {
        let d = Directory::default();
        let sol = InstanceId::primary(SystemId(0));
        let two = InstanceId::new(SystemId(0), 2);
        let moving = Place::Jumping {
            from: sol,
            xfer: Xfer(3),
            to: two,
        };
        d.set("ann", moving, Version(6));
        let landed = Landed {
            system: SystemId(0),
            instance: 1,
            population: 1,
        };
        d.landed("ann", landed, Version(5));
        assert_eq!(
            d.place("ann"),
            Some(moving),
            "the landing at version 5 came late"
        );
        d.set("ann", Place::In(two), Version(7));
        assert_eq!(d.place("ann"), Some(Place::In(two)));
        assert_eq!(d.get("ann"), Some(SystemPlace::In(SystemId(0))));
    }
}
