//! Instances of a star system: when a system is crowded, more copies of it are opened ("Sol #2"),
//! each with its own players, wrecks and fights, all sharing the system's one market.
//!
//! An [`InstanceId`] names one copy: the star system and a number, 1 for the system itself (its
//! primary instance, the only one that exists until the system is crowded) and 2.. for the
//! others. In logs an instance is written by its slug, the system's slug for the primary
//! (`sol`, as before instances existed) and `<slug>.<n>` for the others (`sol.2`).
//!
//! Pure naming: never does I/O; which instances exist is the primary's state
//! ([`super::system::SystemState::instances`]).

use serde::Serialize;

use super::galaxy::{Galaxy, SystemId};

/// The number of a system's primary instance.
pub const PRIMARY_INSTANCE: u16 = 1;

/// The most instances one system may have open at once (the primary included): a limit on the
/// shards, logs and tick loops one crowded system can make the mesh run.
pub const MAX_INSTANCES_PER_SYSTEM: u16 = 256;

/// One instance of one star system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InstanceId {
    pub system: SystemId,
    /// 1 for the primary, 2.. for the instances opened when the system was crowded.
    pub n: u16,
}

impl InstanceId {
    /// The primary instance of `system`: the system itself.
    pub fn primary(system: SystemId) -> InstanceId {
        InstanceId {
            system,
            n: PRIMARY_INSTANCE,
        }
    }

    /// Instance `n` of `system`.
    pub fn new(system: SystemId, n: u16) -> InstanceId {
        assert!(
            (PRIMARY_INSTANCE..=MAX_INSTANCES_PER_SYSTEM).contains(&n),
            "instance number {n} out of range"
        );
        InstanceId { system, n }
    }

    pub fn is_primary(self) -> bool {
        self.n == PRIMARY_INSTANCE
    }

    /// The slug logs name it by: `sol`, or `sol.2`.
    pub fn slug(self, galaxy: &Galaxy) -> String {
        let slug = galaxy.slug(self.system);
        if self.is_primary() {
            slug.to_string()
        } else {
            format!("{slug}.{}", self.n)
        }
    }

    /// The name players see: `Sol`, or `Sol #2`.
    pub fn name(self, galaxy: &Galaxy) -> String {
        let name = galaxy.name(self.system);
        if self.is_primary() {
            name.to_string()
        } else {
            format!("{name} #{}", self.n)
        }
    }

    /// Reads a slug written by [`InstanceId::slug`]. System slugs never hold a `.`, so the
    /// number is whatever follows the first one.
    pub fn parse(galaxy: &Galaxy, text: &str) -> Option<InstanceId> {
        match text.split_once('.') {
            None => galaxy.by_slug(text).map(InstanceId::primary),
            Some((slug, n)) => {
                let system = galaxy.by_slug(slug)?;
                if n.starts_with('0') {
                    return None;
                }
                let n: u16 = n.parse().ok()?;
                (n > PRIMARY_INSTANCE && n <= MAX_INSTANCES_PER_SYSTEM)
                    .then_some(InstanceId { system, n })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_slugs_round_trip_and_the_primary_keeps_the_system_slug() {
        let g = Galaxy::default_galaxy();
        let sol = g.home();
        let p = InstanceId::primary(sol);
        assert_eq!(p.slug(&g), "sol");
        assert_eq!(p.name(&g), "Sol");
        let two = InstanceId::new(sol, 2);
        assert_eq!(two.slug(&g), "sol.2");
        assert_eq!(two.name(&g), "Sol #2");
        for id in [p, two, InstanceId::new(sol, MAX_INSTANCES_PER_SYSTEM)] {
            assert_eq!(InstanceId::parse(&g, &id.slug(&g)), Some(id));
        }
        for bad in [
            "sol.1",
            "sol.0",
            "sol.02",
            "sol.x",
            "sol.",
            "nowhere.2",
            "sol.65536",
        ] {
            assert_eq!(InstanceId::parse(&g, bad), None, "{bad}");
        }
        assert!(g.ids().all(|id| !g.slug(id).contains('.')));
    }
}
