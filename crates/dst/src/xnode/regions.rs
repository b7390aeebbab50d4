//! The regions world (issue 20; seeds 6 mod 8, or `--world regions`): the cross-node world
//! with its units homed in two regions, each region its own stream (its own sequences,
//! duplicate window and lease revisions) served by its own nodes, and a link between them.
//!
//! - a jump's pair subject lives in its destination's home region: an origin's publish to a
//!   unit of the other region and its acknowledgement cross the link, each delayed by the
//!   seed's link delay (steps); while the link is partitioned (or the other region is dead)
//!   they are dropped, and the publisher sends again with the same id until acknowledged;
//! - each region holds a copy of the other's stream: an ordered prefix (every message up to a
//!   sequence) that advances one message at a time over the link, a message no sooner than
//!   the link's delay after it was stored, and stalls while the link is cut;
//! - faults on top of the cross-node world's: partition and heal at any step, a whole region
//!   killed (its nodes crash and its stream is unreachable), the lost region coming back, and
//!   the promotion of the survivor from its copy (`mltrader region promote`, decision 5 of
//!   issue 20), whose decisions are `mesh::protocol::promote`'s;
//! - checks on top of the cross-node world's ([`super::checks`], judged on what the streams
//!   stored, the truth rebuilt at a promotion from what survived): the promoted epoch is above
//!   every epoch the lost region gave its units (its old owners are fenced); the survivor
//!   serves every message of the copy, byte for byte; the loss promote reports is the truth's
//!   (a bound as of the last contact at the promotion, exactly once the lost region's stream
//!   can be read again); an acknowledged jump that never lands was lost with a reported
//!   message.
//!
//! One promotion per seed. A lost region that comes back after a promotion restarts its nodes
//! empty: they read the homes before claiming and never claim a re-homed unit. Never reads a
//! clock, never iterates a hash map, never draws from anything but the seed's RNG.

use std::collections::BTreeSet;

use mesh::protocol::promote::{self, Loss};
use serde::Serialize;

use super::js::{Subject, REGIONS};
use super::*;

/// The link's delay between regions, in steps: the seed picks one from 1 to this.
pub const LINK_DELAY_STEPS_MAX: u64 = 8;

/// Nodes in a seed of this world: one or two per region.
pub const REGION_NODES_MAX: u64 = 4;

/// The regions' names in the galaxy file (region 0 is the home unit's).
pub const REGION_NAMES: [&str; REGIONS] = ["eu", "us"];

/// `galaxy` written again with each system's home region (`homes`), and parsed.
fn with_regions(galaxy: &Galaxy, homes: &BTreeMap<SystemId, Region>) -> Galaxy {
    let mut text = format!(
        "home = \"{}\"\nlane_range_ly = {}\n",
        galaxy.name(galaxy.home()),
        galaxy.lane_range_ly()
    );
    for id in galaxy.ids() {
        let s = galaxy.system(id);
        let [x, y, z] = s.position_ly;
        text.push_str(&format!(
            "[[system]]\nname = \"{}\"\nposition_ly = [{x}, {y}, {z}]\nregion = \"{}\"\n",
            s.name, REGION_NAMES[homes[&id] as usize]
        ));
    }
    let out = Galaxy::from_toml_str(&text).expect("the galaxy with regions parses");
    for id in galaxy.ids() {
        assert_eq!(out.slug(id), galaxy.slug(id));
        assert_eq!(out.neighbours(id), galaxy.neighbours(id));
    }
    out
}

/// A subject of a stream: a unit's log or a pair subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Where {
    Unit(SystemId),
    Pair(Pair),
}

/// The two regions, their link and copies.
#[derive(Clone, Debug)]
pub struct Regions {
    /// Each node's region.
    pub of_node: Vec<Region>,
    pub link_up: bool,
    pub delay_steps: u64,
    pub alive: [bool; REGIONS],
    /// `copied[r]`: the last sequence of region r's stream the other region's copy holds.
    pub copied: [u64; REGIONS],
    /// `last_seen[r]`: region r's last sequence and the step the other region last heard it.
    pub last_seen: [(u64, u64); REGIONS],
    /// Each unit's home generation (`mlt_homes`): raised by a promotion.
    pub generation: BTreeMap<SystemId, u64>,
    pub promoted: Option<Promoted>,
    /// Jumps one of whose publishes the link lost.
    pub dropped_jumps: BTreeSet<Key>,
}

/// What a promotion did and must answer for.
#[derive(Clone, Debug)]
pub struct Promoted {
    pub lost: Region,
    pub copy_last: u64,
    pub units: BTreeSet<SystemId>,
    /// The lost region's subjects as they stood (unreadable until it comes back).
    pub archive_units: BTreeMap<SystemId, Subject<Records>>,
    pub archive_pairs: BTreeMap<Pair, Subject<Jump>>,
    /// What promote reported at the promotion (the lost stream unreadable).
    pub reported: Loss<String>,
    /// The truth: the lost region's messages after the copy's last, per subject.
    pub lost_truth: BTreeMap<String, Vec<u64>>,
}

/// What the regions world did, counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RCounts {
    pub seeds: u64,
    pub partitions: u64,
    pub heals: u64,
    /// Steps the link was cut.
    pub partitioned_steps: u64,
    /// Publishes and answers dropped by a cut link or a dead region (sent again).
    pub dropped_on_link: u64,
    /// Jumps stored on a pair subject of the other region (across the link).
    pub jumps_across: u64,
    /// Of those: stored while or after a partition dropped one of their publishes.
    pub jumps_across_after_drop: u64,
    pub messages_copied: u64,
    /// The largest copy lag seen (messages of a region's stream not yet in its copy).
    pub copy_lag_max: u64,
    pub regions_killed: u64,
    pub regions_back: u64,
    /// Pair subjects' `lease` records a takeover left for later (across a cut link).
    pub pair_fences_deferred: u64,
    /// Of those, written once the link was back.
    pub pair_fences_written_later: u64,
    pub promotions: u64,
    /// Messages lost at promotions (after the copy's last), by the truth.
    pub messages_lost: u64,
    pub messages_served_from_copy: u64,
    pub departures_reconciled: u64,
    pub jumps_republished: u64,
    /// Acknowledged jumps lost with a lost region (their `depart` after the copy's last).
    pub acked_jumps_lost: u64,
    /// Exact losses checked once the lost region came back.
    pub exact_losses_checked: u64,
}

impl RCounts {
    pub fn add(&mut self, c: &RCounts) {
        let pairs: [(&mut u64, u64); 19] = [
            (&mut self.seeds, c.seeds),
            (&mut self.partitions, c.partitions),
            (&mut self.heals, c.heals),
            (&mut self.partitioned_steps, c.partitioned_steps),
            (&mut self.dropped_on_link, c.dropped_on_link),
            (&mut self.jumps_across, c.jumps_across),
            (&mut self.jumps_across_after_drop, c.jumps_across_after_drop),
            (&mut self.messages_copied, c.messages_copied),
            (&mut self.regions_killed, c.regions_killed),
            (&mut self.regions_back, c.regions_back),
            (&mut self.pair_fences_deferred, c.pair_fences_deferred),
            (
                &mut self.pair_fences_written_later,
                c.pair_fences_written_later,
            ),
            (&mut self.promotions, c.promotions),
            (&mut self.messages_lost, c.messages_lost),
            (
                &mut self.messages_served_from_copy,
                c.messages_served_from_copy,
            ),
            (&mut self.departures_reconciled, c.departures_reconciled),
            (&mut self.jumps_republished, c.jumps_republished),
            (&mut self.acked_jumps_lost, c.acked_jumps_lost),
            (&mut self.exact_losses_checked, c.exact_losses_checked),
        ];
        for (t, v) in pairs {
            *t += v;
        }
        self.copy_lag_max = self.copy_lag_max.max(c.copy_lag_max);
    }

    pub fn text(&self) -> String {
        format!(
            "regions world: {} seeds; {} partitions ({} steps cut), {} heals, {} messages dropped on the link; {} jumps across the link ({} after a drop); {} messages copied (largest lag {}); {} regions killed, {} back; {} pair fences deferred by takeovers across a cut link ({} written later); {} promotions: {} messages served from the copy, {} lost, {} departures reconciled, {} jumps republished, {} acknowledged jumps lost as reported; {} exact losses checked",
            self.seeds,
            self.partitions,
            self.partitioned_steps,
            self.heals,
            self.dropped_on_link,
            self.jumps_across,
            self.jumps_across_after_drop,
            self.messages_copied,
            self.copy_lag_max,
            self.regions_killed,
            self.regions_back,
            self.pair_fences_deferred,
            self.pair_fences_written_later,
            self.promotions,
            self.messages_served_from_copy,
            self.messages_lost,
            self.departures_reconciled,
            self.jumps_republished,
            self.acked_jumps_lost,
            self.exact_losses_checked,
        )
    }
}

/// Sets a new world up with two regions: the home unit in region 0, the others at random
/// (each region homes one at least), one or two nodes per region, each unit taken by a node
/// of its region.
pub(super) fn start(w: &mut XWorld) {
    let units: Vec<SystemId> = w.galaxy.ids().collect();
    assert!(units.len() >= 2, "two regions need two units");
    let home = w.galaxy.home();
    let mut homes: BTreeMap<SystemId, Region> = BTreeMap::new();
    for &u in &units {
        let r = if u == home {
            0
        } else {
            w.rng.below(2) as Region
        };
        homes.insert(u, r);
    }
    if !homes.values().any(|&r| r == 1) {
        let other = *units.iter().find(|&&u| u != home).expect("two units");
        homes.insert(other, 1);
    }
    // The homes go into the galaxy file (`region = "eu"` on each system), and are read back
    // from it, as the server reads them.
    w.galaxy = with_regions(&w.galaxy, &homes);
    let homes: BTreeMap<SystemId, Region> = units
        .iter()
        .map(|&u| {
            let name = w.galaxy.region_of(u).expect("every system has a region");
            let r = REGION_NAMES
                .iter()
                .position(|&n| n == name)
                .expect("a region of ours");
            (u, r as Region)
        })
        .collect();
    let nodes = w.rng.range_inclusive(2, REGION_NODES_MAX) as usize;
    let of_node: Vec<Region> = (0..nodes).map(|n| (n % 2) as Region).collect();
    w.nodes = vec![
        Node {
            up: true,
            ..Node::default()
        };
        nodes
    ];
    w.stream.home = homes.clone();
    let delay_steps = w.rng.range_inclusive(1, LINK_DELAY_STEPS_MAX);
    w.regions = Some(Regions {
        of_node: of_node.clone(),
        link_up: true,
        delay_steps,
        alive: [true; REGIONS],
        copied: [0; REGIONS],
        last_seen: [(0, 0); REGIONS],
        generation: BTreeMap::new(),
        promoted: None,
        dropped_jumps: BTreeSet::new(),
    });
    w.counts.regions.seeds = 1;
    for unit in units {
        let r = homes[&unit];
        let mine: Vec<NodeId> = (0..nodes as NodeId)
            .filter(|&n| of_node[n as usize] == r)
            .collect();
        let node = mine[w.rng.below(mine.len() as u64) as usize];
        w.takeover(node, unit).expect("a first takeover");
    }
    let text = format!(
        "REGIONS: link delay {delay_steps} steps; nodes {:?}; homes {:?}",
        of_node,
        homes
            .iter()
            .map(|(u, r)| format!("{}:{}", w.galaxy.slug(*u), REGION_NAMES[*r as usize]))
            .collect::<Vec<_>>()
    );
    w.note(None, None, text);
}

/// The regions world's actions possible now.
pub(super) fn enabled(w: &XWorld, all: &mut Vec<(u64, Action)>) {
    let Some(r) = &w.regions else {
        return;
    };
    let quiet = w.quiet;
    if r.link_up {
        if !quiet {
            all.push((2, Action::Partition));
        }
    } else {
        all.push((if quiet { 500 } else { 8 }, Action::Heal));
    }
    for (n, node) in w.nodes.iter().enumerate() {
        let n = n as NodeId;
        if !w.running(n) {
            continue;
        }
        for (&id, u) in &node.units {
            for pair in u.outbox.unfenced() {
                if w.reaches(n, pair) && w.stream.lease(id) == (n, u.epoch) {
                    all.push((60, Action::FencePair(n, id, pair)));
                }
            }
        }
    }
    for region in 0..REGIONS as Region {
        if r.link_up && r.alive.iter().all(|&a| a) && w.copyable(region).is_some() {
            all.push((100, Action::Copy(region)));
        }
        let other = 1 - region;
        if !r.alive[region as usize] {
            let back = if quiet { 300 } else { 4 };
            all.push((back, Action::RegionBack(region)));
            if r.promoted.is_none() && r.alive[other as usize] {
                all.push((back, Action::Promote(region)));
            }
        } else if !quiet && r.promoted.is_none() && r.alive[other as usize] {
            all.push((1, Action::KillRegion(region)));
        }
    }
}

impl XWorld {
    /// Whether wire `wire` is lost on its way: to or from a dead region, across a cut link,
    /// or to a subject that has moved to another region since it was sent. Counts it.
    pub(super) fn lost_on_the_way<T>(&mut self, wire: &Wire<T>) -> bool {
        let Some(r) = &self.regions else {
            return false;
        };
        let crosses = r.of_node[wire.node as usize] != wire.target;
        let lost = !r.alive[wire.target as usize] || (crosses && !r.link_up);
        if lost {
            self.counts.regions.dropped_on_link += 1;
        }
        lost
    }

    /// Whether a request to region `target` was sent to a subject that has moved to another
    /// region since (a promotion): lost. Counts it.
    pub(super) fn moved_since(&mut self, target: Region, now: Region) -> bool {
        let moved = self.regions.is_some() && target != now;
        if moved {
            self.counts.regions.dropped_on_link += 1;
        }
        moved
    }

    /// Whether node `node` reaches `pair`'s subject now: in its own region, or across a live
    /// link in a live region.
    pub(super) fn reaches(&self, node: NodeId, pair: Pair) -> bool {
        let Some(r) = &self.regions else {
            return true;
        };
        let there = self.stream.region_of_pair(pair);
        there == r.of_node[node as usize] || (r.link_up && r.alive[there as usize])
    }

    /// The owner `node` of `unit` writes its deferred `lease` record on `pair` (the link is
    /// back): its jumps there may go.
    pub(super) fn fence_pair_later(
        &mut self,
        node: NodeId,
        unit: SystemId,
        pair: Pair,
    ) -> Result<(), Violation> {
        let epoch = self.nodes[node as usize].units[&unit].epoch;
        let seq = self.fence_pair(node, epoch, pair)?;
        self.unit_mut(node, unit).outbox.fenced(pair, seq);
        let text = format!(
            "n{node} fences {} at {seq} (deferred)",
            pair_name(&self.galaxy, pair)
        );
        self.note(None, None, text);
        Ok(())
    }

    /// Whether node `node` may claim `unit`: it is of the unit's home region, and alive.
    pub(super) fn may_claim(&self, node: NodeId, unit: SystemId) -> bool {
        match &self.regions {
            None => true,
            Some(r) => r.of_node[node as usize] == self.stream.region_of(unit),
        }
    }

    /// Whether node `node` may restart: its region is alive.
    pub(super) fn may_restart(&self, node: NodeId) -> bool {
        match &self.regions {
            None => true,
            Some(r) => r.alive[r.of_node[node as usize] as usize],
        }
    }

    /// The next message of region `region`'s stream its copy may take now (its sequence).
    fn copyable(&self, region: Region) -> Option<u64> {
        let r = self.regions.as_ref()?;
        let next = r.copied[region as usize] + 1;
        let (_, at_step) = self.message_of(region, next)?;
        (at_step + r.delay_steps <= self.step).then_some(next)
    }

    /// The subject and step stored of message `seq` of region `region`'s live stream.
    fn message_of(&self, region: Region, seq: u64) -> Option<(Where, u64)> {
        for (&u, s) in &self.stream.units {
            if self.stream.region_of(u) != region {
                continue;
            }
            if let Some(m) = find(s, seq) {
                return Some((Where::Unit(u), m.at_step));
            }
        }
        for (&p, s) in &self.stream.pairs {
            if self.stream.region_of_pair(p) != region {
                continue;
            }
            if let Some(m) = find(s, seq) {
                return Some((Where::Pair(p), m.at_step));
            }
        }
        None
    }

    pub(super) fn partition(&mut self) {
        let r = self.regions.as_mut().expect("regions");
        r.link_up = false;
        self.counts.regions.partitions += 1;
        self.note(
            None,
            None,
            "PARTITION: the link between regions is cut".into(),
        );
    }

    pub(super) fn heal(&mut self) {
        let r = self.regions.as_mut().expect("regions");
        r.link_up = true;
        self.counts.regions.heals += 1;
        self.note(None, None, "HEAL: the link between regions is back".into());
    }

    /// The copy of region `region` takes its next message.
    pub(super) fn copy(&mut self, region: Region) {
        let Some(seq) = self.copyable(region) else {
            return;
        };
        let last = self.stream.next_seq[region as usize];
        let step = self.step;
        let r = self.regions.as_mut().expect("regions");
        r.copied[region as usize] = seq;
        r.last_seen[region as usize] = (last, step);
        let c = &mut self.counts.regions;
        c.messages_copied += 1;
        c.copy_lag_max = c.copy_lag_max.max(last - seq);
    }

    pub(super) fn kill_region(&mut self, region: Region) {
        let r = self.regions.as_mut().expect("regions");
        r.alive[region as usize] = false;
        let nodes: Vec<NodeId> = (0..r.of_node.len() as NodeId)
            .filter(|&n| r.of_node[n as usize] == region)
            .collect();
        self.counts.regions.regions_killed += 1;
        let text = format!(
            "KILL: region {region} is lost (its stream at {}, copied to {})",
            self.stream.next_seq[region as usize], r.copied[region as usize]
        );
        self.note(None, None, text);
        for n in nodes {
            if self.nodes[n as usize].up {
                self.crash(n);
            }
        }
    }

    /// The lost region `region` comes back: its stream is readable again, its nodes may
    /// restart. After a promotion, the loss promote reports from its stream must be the
    /// truth's, exactly.
    pub(super) fn region_back(&mut self, region: Region) -> Result<(), Violation> {
        let r = self.regions.as_mut().expect("regions");
        r.alive[region as usize] = true;
        self.counts.regions.regions_back += 1;
        self.note(None, None, format!("BACK: region {region} is back"));
        let Some(p) = self.regions.as_ref().and_then(|r| r.promoted.clone()) else {
            return Ok(());
        };
        if p.lost != region {
            return Ok(());
        }
        let mut messages = Vec::new();
        for (u, s) in &p.archive_units {
            let name = format!("sys.{}", self.galaxy.slug(*u));
            messages.extend(s.msgs.iter().map(|m| (m.seq, name.clone())));
        }
        for (pair, s) in &p.archive_pairs {
            let name = pair_name(&self.galaxy, *pair);
            messages.extend(s.msgs.iter().map(|m| (m.seq, name.clone())));
        }
        let exact = Loss::exact(p.copy_last, messages);
        let Loss::Exact { per_system, .. } = &exact else {
            unreachable!("exact")
        };
        if *per_system != p.lost_truth {
            return Err(Violation {
                invariant: "loss_reported",
                player: None,
                jump: None,
                what: format!(
                    "promote reports the loss {per_system:?}, the lost region stored {:?} after the copy's {}",
                    p.lost_truth, p.copy_last
                ),
            });
        }
        self.counts.regions.exact_losses_checked += 1;
        let text = format!(
            "LOSS: exactly {} messages after {} ({:?})",
            exact.records(),
            p.copy_last,
            per_system
        );
        self.note(None, None, text);
        Ok(())
    }

    /// The survivor takes the lost region `lost`'s units from its copy (decision 5): the
    /// copy's messages written into its own stream, the truth rebuilt from what survived, the
    /// units' new home at a promoted epoch, the reconcile with the survivor's logs, and the
    /// loss reported.
    pub(super) fn promote(&mut self, lost: Region) -> Result<(), Violation> {
        let survivor = 1 - lost;
        let r = self.regions.as_ref().expect("regions");
        let copy_last = r.copied[lost as usize];
        let (last_seen, seen_at) = r.last_seen[lost as usize];
        let units: BTreeSet<SystemId> = self
            .galaxy
            .ids()
            .filter(|&u| self.stream.region_of(u) == lost)
            .collect();
        // The lost region's subjects leave the live streams: unreadable now.
        let archive_units: BTreeMap<SystemId, Subject<Records>> = units
            .iter()
            .map(|u| (*u, self.stream.units.remove(u).unwrap_or_default()))
            .collect();
        let lost_pairs: Vec<Pair> = self
            .stream
            .pairs
            .keys()
            .filter(|p| units.contains(&p.to))
            .copied()
            .collect();
        let archive_pairs: BTreeMap<Pair, Subject<Jump>> = lost_pairs
            .iter()
            .map(|p| (*p, self.stream.pairs.remove(p).expect("listed")))
            .collect();
        let mut lost_truth: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (u, s) in &archive_units {
            let seqs: Vec<u64> = s.after(copy_last).map(|m| m.seq).collect();
            if !seqs.is_empty() {
                lost_truth.insert(format!("sys.{}", self.galaxy.slug(*u)), seqs);
            }
        }
        for (p, s) in &archive_pairs {
            let seqs: Vec<u64> = s.after(copy_last).map(|m| m.seq).collect();
            if !seqs.is_empty() {
                lost_truth.insert(pair_name(&self.galaxy, *p), seqs);
            }
        }
        let lost_count: u64 = lost_truth.values().map(|s| s.len() as u64).sum();
        let reported = Loss::as_of_contact(copy_last, last_seen, seen_at);
        // The bound as of the last contact: every message up to what was seen then is lost
        // (the copy is a prefix); the lost region may have stored more since.
        let total = self.stream.next_seq[lost as usize];
        if reported.records() > lost_count || total - copy_last != lost_count {
            return Err(Violation {
                invariant: "loss_reported",
                player: None,
                jump: None,
                what: format!(
                    "promote reports at most {} messages lost after {copy_last} as of step {seen_at}; the lost region stored {lost_count} after it (its last {total})",
                    reported.records()
                ),
            });
        }
        self.stream.ids[lost as usize].clear();
        // New homes, at a promoted epoch, the snapshots dropped (their positions are the lost
        // stream's sequences).
        let mut epochs = BTreeMap::new();
        for &u in &units {
            self.stream.home.insert(u, survivor);
            let in_copy = archive_units[&u]
                .msgs
                .iter()
                .filter(|m| m.seq <= copy_last)
                .map(|m| m.epoch)
                .max()
                .unwrap_or(0);
            let issued = archive_units[&u]
                .msgs
                .iter()
                .map(|m| m.epoch)
                .chain(std::iter::once(self.stream.lease(u).1))
                .max()
                .unwrap_or(0);
            let r = self.regions.as_mut().expect("regions");
            let generation = r.generation.entry(u).or_default();
            let epoch = promote::promoted_epoch(*generation, in_copy);
            *generation = promote::generation_of(epoch);
            if epoch <= issued {
                return Err(Violation {
                    invariant: "promoted_epoch_fences",
                    player: None,
                    jump: None,
                    what: format!(
                        "{} is promoted at epoch {epoch} (its copy shows {in_copy}); the lost region gave epoch {issued}: an old owner is not fenced",
                        self.galaxy.slug(u)
                    ),
                });
            }
            self.stream.leases.insert(u, (NodeId::MAX, epoch));
            let kv = &mut self.stream.next_epoch[survivor as usize];
            *kv = (*kv).max(epoch);
            self.stream.snapshots.remove(&u);
            epochs.insert(u, epoch);
        }
        self.rebuild_truth(&archive_units, &archive_pairs, copy_last)?;
        let served = self.write_copy(&archive_units, &archive_pairs, copy_last);
        self.counts.regions.messages_served_from_copy += served;
        self.copy_is_served(&archive_units, &archive_pairs, copy_last)?;
        self.fence_promoted_pairs(&epochs)?;
        let copy_states = self.copy_states(&units);
        let again = self.to_republish(&units, &archive_pairs, &copy_states, copy_last);
        self.reconcile_departures(&units, &copy_states, &epochs, &again)?;
        self.publish_again(again)?;
        self.forget_lost_acks()?;
        for &u in &units {
            self.silent_since
                .insert(u, self.step.saturating_sub(LEASE_STEPS));
        }
        self.counts.regions.promotions += 1;
        self.counts.regions.messages_lost += lost_count;
        let text = format!(
            "PROMOTE: region {survivor} takes {:?} from its copy up to {copy_last} (at most {} lost as of step {seen_at}; truly {lost_count})",
            units.iter().map(|u| self.galaxy.slug(*u)).collect::<Vec<_>>(),
            reported.records()
        );
        self.note(None, None, text);
        let r = self.regions.as_mut().expect("regions");
        r.promoted = Some(Promoted {
            lost,
            copy_last,
            units,
            archive_units,
            archive_pairs,
            reported,
            lost_truth,
        });
        Ok(())
    }

    /// The truth again, from every message stored in order but those lost (the lost
    /// region's after the copy's last). Acknowledgements stay facts.
    fn rebuild_truth(
        &mut self,
        archive_units: &BTreeMap<SystemId, Subject<Records>>,
        archive_pairs: &BTreeMap<Pair, Subject<Jump>>,
        copy_last: u64,
    ) -> Result<(), Violation> {
        let old = std::mem::replace(&mut self.truth, Truth::new(&self.galaxy));
        self.truth.acked_jumps = old.acked_jumps;
        let mut fenced: BTreeMap<Where, u64> = BTreeMap::new();
        let history = std::mem::take(&mut self.history);
        for &(at, seq) in &history {
            match at {
                Where::Unit(u) => {
                    let archived = archive_units.get(&u);
                    let subject = archived.unwrap_or_else(|| &self.stream.units[&u]);
                    let msg = find(subject, seq).expect("a stored message").clone();
                    if archived.is_some() && seq > copy_last {
                        if let Body::Data(records) = &msg.body {
                            for (_, e) in records {
                                if let Event::Depart { xfer, .. } = e {
                                    let key = (InstanceId::primary(u), *xfer);
                                    self.truth.departs_lost.insert(key);
                                }
                            }
                        }
                        continue;
                    }
                    let fenced_at = fenced.get(&at).copied();
                    self.truth.stored_unit(&self.galaxy, u, fenced_at, &msg)?;
                    if let Body::Lease = msg.body {
                        fenced.insert(at, msg.epoch);
                    }
                }
                Where::Pair(p) => {
                    let archived = archive_pairs.get(&p);
                    let subject = archived.unwrap_or_else(|| &self.stream.pairs[&p]);
                    let msg = find(subject, seq).expect("a stored message").clone();
                    if archived.is_some() && seq > copy_last {
                        continue;
                    }
                    let fenced_at = fenced.get(&at).copied();
                    self.truth.stored_pair(&self.galaxy, p, fenced_at, &msg)?;
                    if let Body::Lease = msg.body {
                        fenced.insert(at, msg.epoch);
                    }
                }
            }
        }
        self.history = history;
        Ok(())
    }

    /// The copy's messages written into the survivor's stream under their subjects, in the
    /// order the lost region stored them, with their bytes, writer and epoch (jumps with
    /// their transfer id: a publish of one again is a duplicate). Returns how many.
    fn write_copy(
        &mut self,
        archive_units: &BTreeMap<SystemId, Subject<Records>>,
        archive_pairs: &BTreeMap<Pair, Subject<Jump>>,
        copy_last: u64,
    ) -> u64 {
        let mut order: Vec<(u64, Where)> = Vec::new();
        for (u, s) in archive_units {
            let upto = s.msgs.iter().take_while(|m| m.seq <= copy_last);
            order.extend(upto.map(|m| (m.seq, Where::Unit(*u))));
        }
        for (p, s) in archive_pairs {
            let upto = s.msgs.iter().take_while(|m| m.seq <= copy_last);
            order.extend(upto.map(|m| (m.seq, Where::Pair(*p))));
        }
        order.sort();
        for &(seq, at) in &order {
            let (answer, what) = match at {
                Where::Unit(u) => {
                    let m = find(&archive_units[&u], seq).expect("listed").clone();
                    let id = format!("copy {} {seq}", self.galaxy.slug(u));
                    let a = self
                        .stream
                        .append_unit(u, &id, None, (m.node, m.epoch, m.body));
                    (a, id)
                }
                Where::Pair(p) => {
                    let m = find(&archive_pairs[&p], seq).expect("listed").clone();
                    let id = match &m.body {
                        Body::Data(j) => {
                            Some(format!("jump {}", handover::msg_id(&self.galaxy, j)))
                        }
                        Body::Lease => None,
                    };
                    let a =
                        self.stream
                            .publish_pair(p, id.as_deref(), None, (m.node, m.epoch, m.body));
                    (a, id.unwrap_or_default())
                }
            };
            // A jump stored twice in the lost stream (past its duplicate window) is written
            // once: the second is answered duplicate.
            let twice = matches!(answer, Answer::Duplicate(_)) && what.starts_with("jump ");
            assert!(
                matches!(answer, Answer::Stored(_)) || twice,
                "BUG: the copy's message {seq} ({what}) not stored by the survivor: {answer:?}"
            );
        }
        order.len() as u64
    }

    /// Every message of the copy is served by the survivor: each promoted unit's log holds
    /// the copy's messages, in order, with the same records and epochs.
    fn copy_is_served(
        &self,
        archive_units: &BTreeMap<SystemId, Subject<Records>>,
        archive_pairs: &BTreeMap<Pair, Subject<Jump>>,
        copy_last: u64,
    ) -> Result<(), Violation> {
        for (p, s) in archive_pairs {
            // A jump the lost stream stored twice (past its window) is served once.
            let mut seen = BTreeSet::new();
            let copy: Vec<String> = s
                .msgs
                .iter()
                .take_while(|m| m.seq <= copy_last)
                .filter_map(|m| match &m.body {
                    Body::Data(j) => seen
                        .insert((j.from, j.xfer))
                        .then(|| format!("{} {j:?}", m.epoch)),
                    Body::Lease => Some(format!("{} lease", m.epoch)),
                })
                .collect();
            let served: Vec<String> = self
                .stream
                .pairs
                .get(p)
                .map_or(&[][..], |s| &s.msgs[..])
                .iter()
                .map(|m| match &m.body {
                    Body::Data(j) => format!("{} {j:?}", m.epoch),
                    Body::Lease => format!("{} lease", m.epoch),
                })
                .collect();
            if copy != served {
                return Err(Violation {
                    invariant: "copy_served",
                    player: None,
                    jump: None,
                    what: format!(
                        "{} on the survivor holds {} messages, the copy {} (up to {copy_last})",
                        pair_name(&self.galaxy, *p),
                        served.len(),
                        copy.len()
                    ),
                });
            }
        }
        for (u, s) in archive_units {
            let copy: Vec<_> = s.msgs.iter().take_while(|m| m.seq <= copy_last).collect();
            let served = self.stream.units.get(u).map_or(&[][..], |s| &s.msgs[..]);
            let same = copy.len() == served.len()
                && copy.iter().zip(served).all(|(a, b)| {
                    a.epoch == b.epoch
                        && match (&a.body, &b.body) {
                            (Body::Lease, Body::Lease) => true,
                            (Body::Data(x), Body::Data(y)) => x == y,
                            _ => false,
                        }
                });
            if !same {
                return Err(Violation {
                    invariant: "copy_served",
                    player: None,
                    jump: None,
                    what: format!(
                        "{}'s log on the survivor holds {} messages, the copy {} (up to {copy_last})",
                        self.galaxy.slug(*u),
                        served.len(),
                        copy.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// A `lease` record of each promoted unit's new epoch on each of its pair subjects, now
    /// all in the survivor's stream: an old owner's publish still on its way (sent before its
    /// region was lost, or by a region believed lost and only cut off) is refused from here,
    /// before the reconcile reads them.
    fn fence_promoted_pairs(&mut self, epochs: &BTreeMap<SystemId, u64>) -> Result<(), Violation> {
        for (&u, &epoch) in epochs {
            let others: Vec<SystemId> = self.galaxy.ids().filter(|&o| o != u).collect();
            for to in others {
                let pair = Pair { from: u, to };
                let subject = self.stream.pairs.entry(pair).or_default();
                let (last, fenced_at) = (subject.last_seq(), subject.fenced_at());
                let lease = (NodeId::MAX, epoch, Body::Lease);
                let answer = self.stream.publish_pair(pair, None, Some(last), lease);
                assert!(matches!(answer, Answer::Stored(_)), "{answer:?}");
                let msg = self.stream.pairs[&pair]
                    .msgs
                    .last()
                    .cloned()
                    .expect("stored");
                self.stored_pair(pair, fenced_at, &msg)?;
            }
        }
        Ok(())
    }

    /// Each promoted unit's state as the copy (now its log on the survivor) has it.
    fn copy_states(&self, units: &BTreeSet<SystemId>) -> BTreeMap<SystemId, SystemState> {
        units
            .iter()
            .map(|&u| {
                let mut state = SystemState::new(&self.galaxy, u);
                for m in self.stream.units.get(&u).into_iter().flat_map(|s| &s.msgs) {
                    if let Body::Data(records) = &m.body {
                        for (t, e) in records {
                            state.apply(*t, e).expect("the copy replays");
                        }
                    }
                }
                (u, state)
            })
            .collect()
    }

    /// Decision 5's first reconcile: the jumps from promoted units on the survivor's pair
    /// subjects that their copies have no `depart` for are departures
    /// (`promote::reconcile`), appended to their logs (an event a message) before anyone
    /// serves them.
    fn reconcile_departures(
        &mut self,
        units: &BTreeSet<SystemId>,
        copy_states: &BTreeMap<SystemId, SystemState>,
        epochs: &BTreeMap<SystemId, u64>,
        again: &[Jump],
    ) -> Result<(), Violation> {
        let jumps_on = |towards: bool| -> Vec<Jump> {
            self.stream
                .pairs
                .iter()
                .filter(|(p, _)| match towards {
                    true => units.contains(&p.to),
                    false => units.contains(&p.from) && !units.contains(&p.to),
                })
                .flat_map(|(_, s)| s.msgs.iter())
                .filter_map(|m| match &m.body {
                    Body::Data(j) => Some(j.clone()),
                    Body::Lease => None,
                })
                .collect()
        };
        let leaving = jumps_on(false);
        let mut arriving = jumps_on(true);
        arriving.extend(again.iter().cloned());
        let r = promote::reconcile(copy_states, &leaving, &arriving);
        for (i, (u, event)) in r.events.into_iter().enumerate() {
            let t = copy_states[&u].tick;
            let id = format!("reconcile {} {i}", self.galaxy.slug(u));
            let fenced_at = self.stream.units.entry(u).or_default().fenced_at();
            let body = Body::Data(vec![(t, event)]);
            let answer = self
                .stream
                .append_unit(u, &id, None, (NodeId::MAX, epochs[&u], body));
            assert!(matches!(answer, Answer::Stored(_)), "{answer:?}");
            let msg = self.stream.units[&u].msgs.last().cloned().expect("stored");
            self.stored_unit(u, fenced_at, &msg)?;
        }
        self.truth.reconciled(&r.departures);
        self.counts.regions.departures_reconciled += r.departures.len() as u64;
        for d in &r.unresolved {
            let text = format!(
                "RECONCILE: {} left by {} but cannot be moved out of where the copy has them: may be served twice",
                d.jump.player.name,
                mesh::codec::xfer_text(&self.galaxy, d.jump.from, d.jump.xfer)
            );
            self.note(Some(&d.jump.player.name), None, text);
        }
        if !r.departures.is_empty() {
            let text = format!(
                "RECONCILE: {} departures the copy lacks applied",
                r.departures.len()
            );
            self.note(None, None, text);
        }
        Ok(())
    }

    /// Decision 5's second reconcile: the survivor's committed jumps towards promoted units
    /// that the copy's pair subjects lack, to publish again (`promote::to_republish`).
    fn to_republish(
        &self,
        units: &BTreeSet<SystemId>,
        archive_pairs: &BTreeMap<Pair, Subject<Jump>>,
        copy_states: &BTreeMap<SystemId, SystemState>,
        copy_last: u64,
    ) -> Vec<Jump> {
        let departs = self.survivor_departs(units);
        let copied: BTreeSet<(InstanceId, Xfer)> = archive_pairs
            .values()
            .flat_map(|s| s.msgs.iter().take_while(|m| m.seq <= copy_last))
            .filter_map(|m| match &m.body {
                Body::Data(j) => Some((j.from, j.xfer)),
                Body::Lease => None,
            })
            .collect();
        let landed: BTreeMap<SystemId, BTreeMap<InstanceId, Xfer>> = copy_states
            .iter()
            .map(|(u, s)| (*u, s.landed_upto.clone()))
            .collect();
        promote::to_republish(&departs, &copied, &landed)
    }

    /// Publishes `again` on the survivor's pair subjects (with their transfer ids).
    fn publish_again(&mut self, again: Vec<Jump>) -> Result<(), Violation> {
        for jump in again {
            let pair = Pair::of(&jump).expect("between units");
            let id = format!("jump {}", handover::msg_id(&self.galaxy, &jump));
            let fenced_at = self.stream.pairs.entry(pair).or_default().fenced_at();
            let epoch = fenced_at.unwrap_or(0).max(self.stream.lease(pair.from).1);
            let body = Body::Data(jump.clone());
            let answer =
                self.stream
                    .publish_pair(pair, Some(&id), None, (NodeId::MAX, epoch, body));
            if let Answer::Stored(_) = answer {
                let msg = self.stream.pairs[&pair]
                    .msgs
                    .last()
                    .cloned()
                    .expect("stored");
                self.stored_pair(pair, fenced_at, &msg)?;
                self.counts.regions.jumps_republished += 1;
                let key = Some((jump.from, jump.xfer));
                self.note(Some(&jump.player.name), key, format!("REPUBLISH: {id}"));
            }
        }
        Ok(())
    }

    /// Every jump whose `depart` is in a survivor unit's log (and not aborted) towards a
    /// promoted unit, as its origin's log says it left.
    fn survivor_departs(&self, units: &BTreeSet<SystemId>) -> Vec<Jump> {
        let mut out = Vec::new();
        for (&u, s) in &self.stream.units {
            if units.contains(&u) {
                continue;
            }
            let mut state = SystemState::new(&self.galaxy, u);
            let mut jumps: BTreeMap<Xfer, Jump> = BTreeMap::new();
            for m in &s.msgs {
                let Body::Data(records) = &m.body else {
                    continue;
                };
                for (t, e) in records {
                    state.apply(*t, e).expect("a survivor's log replays");
                    match e {
                        Event::Depart { xfer, to, .. } if units.contains(&to.system) => {
                            let d = &state.departing[xfer];
                            let travel =
                                self.galaxy
                                    .travel_ticks(u, to.system, self.rules.ticks_per_ly);
                            let jump = Jump {
                                from: InstanceId::primary(u),
                                xfer: *xfer,
                                to: d.to,
                                t: *t,
                                travel_ticks: travel,
                                player: d.player.clone(),
                                tseq: Seq(0),
                            };
                            jumps.insert(*xfer, jump);
                        }
                        Event::DepartAbort { xfer, .. } => {
                            jumps.remove(xfer);
                        }
                        _ => {}
                    }
                }
            }
            out.extend(jumps.into_values());
        }
        out
    }

    /// Acknowledged jumps the promotion lost (their `depart` was after the copy's last, and
    /// their jump is on no surviving pair subject): reported lost, no longer expected to land.
    fn forget_lost_acks(&mut self) -> Result<(), Violation> {
        let gone: Vec<Key> = self
            .truth
            .acked_jumps
            .iter()
            .filter(|k| !self.truth.departs.contains_key(k) && !self.truth.on_pair.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if !self.truth.departs_lost.contains(&key) {
                let text = mesh::codec::xfer_text(&self.galaxy, key.0, key.1);
                return Err(Violation {
                    invariant: "acked_jump_kept",
                    player: None,
                    jump: Some(key),
                    what: format!("acknowledged jump {text} vanished at a promotion, its depart not among the lost messages"),
                });
            }
            self.truth.acked_jumps.remove(&key);
            self.counts.regions.acked_jumps_lost += 1;
        }
        Ok(())
    }

    /// A message of node `node` at `epoch` was just stored by a survivor: after a promotion, a
    /// node of the lost region writing at an epoch of its old generation (an old owner, its
    /// message sent before its region was lost) must never be (`old_owner_fenced`): the
    /// survivor reads what it stores.
    pub(super) fn old_owner_fenced(
        &self,
        node: NodeId,
        epoch: u64,
        id: &str,
    ) -> Result<(), Violation> {
        let Some(r) = &self.regions else {
            return Ok(());
        };
        let Some(p) = &r.promoted else {
            return Ok(());
        };
        let old = r.of_node[node as usize] == p.lost && promote::generation_of(epoch) == 0;
        if !old {
            return Ok(());
        }
        Err(Violation {
            invariant: "old_owner_fenced",
            player: None,
            jump: None,
            what: format!(
                "{id} of n{node} at epoch {epoch}, an owner of the lost region {}, is stored by the survivor after the promotion",
                REGION_NAMES[p.lost as usize]
            ),
        })
    }

    /// Steps the link spends cut, counted.
    pub(super) fn count_region_step(&mut self) {
        let Some(r) = &self.regions else {
            return;
        };
        if !r.link_up {
            self.counts.regions.partitioned_steps += 1;
        }
    }

    /// A publish of jump `xfer` of `from` lost on the link (it is sent again).
    pub(super) fn dropped_on_link(&mut self, from: InstanceId, xfer: Xfer) {
        if let Some(r) = &mut self.regions {
            r.dropped_jumps.insert((from, xfer));
        }
    }

    /// A jump stored by node `node` on a pair subject of region `target`: across the link?
    pub(super) fn count_across(&mut self, node: NodeId, target: Region, key: Key) {
        let Some(r) = &self.regions else {
            return;
        };
        if r.of_node[node as usize] == target {
            return;
        }
        self.counts.regions.jumps_across += 1;
        if r.dropped_jumps.contains(&key) {
            self.counts.regions.jumps_across_after_drop += 1;
        }
    }
}

use checks::Key;

/// Message `seq` of a subject.
fn find<T>(s: &Subject<T>, seq: u64) -> Option<&Msg<T>> {
    let i = s.msgs.partition_point(|m| m.seq < seq);
    s.msgs.get(i).filter(|m| m.seq == seq)
}

/// A pair subject's name in a loss report.
fn pair_name(galaxy: &Galaxy, pair: Pair) -> String {
    format!("jump.{}.{}", galaxy.slug(pair.from), galaxy.slug(pair.to))
}

/// At a seed's end: a promotion's loss was checked exactly (the lost region came back).
pub(super) fn at_end(w: &XWorld) -> Result<(), Violation> {
    let Some(r) = &w.regions else {
        return Ok(());
    };
    let promoted = r.promoted.is_some() as u64;
    if w.counts.regions.exact_losses_checked != promoted {
        return Err(Violation {
            invariant: "loss_reported",
            player: None,
            jump: None,
            what: format!(
                "{promoted} promotions, {} exact losses checked at the end",
                w.counts.regions.exact_losses_checked
            ),
        });
    }
    Ok(())
}
