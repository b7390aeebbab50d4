//! The instance policy: when a crowded star system opens more instances of itself, whom it moves
//! there, and when an emptied instance merges back and closes.
//!
//! A system's primary shard runs the policy at each of its ticks ([`plan`], a pure function of
//! what the primary knows: its own players, the load its instances report, the clock) and
//! carries the steps out through the log and the jump protocol (`shard/instances.rs`):
//!
//! - **Split** when the primary holds more than `split_above_players` (default 50), or when its
//!   clock is dilated ([`super::dilation`]) and it holds more than half that (the load is
//!   population: a split relieves it better than a slower clock). The new instance is only
//!   filled to half the threshold (`fill`), so that neither it nor the primary is near a
//!   threshold afterwards; open instances with room are filled first.
//! - **Merge** an instance whose population stayed below `merge_below_players` (default 10) for
//!   the whole cool-down, if the primary can take its players without being crowded: the
//!   instance moves everyone back, and **retires** once empty.
//! - **Hysteresis and cool-down**: a split or a merge is never decided within `cooldown_ms` of
//!   the last one, and the gap between the thresholds (over 50 splits, a new instance holds
//!   25, under 10 merges) keeps a population hovering near a threshold from flapping.
//! - **After a restart** the primary's table starts from what recovery found in each open
//!   instance (its players, prepared jumps and the moves committed towards it:
//!   [`InstanceTable::restore`]), so that the first plan sees the layout as it was and keeps
//!   it. Without that it took the instances for empty and filled each again (a crowded Sol at
//!   16 instances of 25 became 16 of 50 after a kill -9). The layout is restored, not
//!   re-planned.
//! - **Groups stay together**: players fighting each other (standing attack orders, either
//!   way, transitively) are one group ([`groups`]); a group moves whole or not at all, and
//!   players in no fight move first.
//!
//! Owns the policy and the primary's table of its instances; never touches a log, never reads
//! a clock (times come in as milliseconds).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use sim::ids::Xfer;
use sim::instance::{MAX_INSTANCES_PER_SYSTEM, PRIMARY_INSTANCE};
use sim::system::SystemState;

/// A clock slower than this (see [`super::dilation`]) counts as overloaded for the policy.
pub const DILATED_BELOW: f64 = 0.9;

pub use super::limits::{MAX_MOVES_PER_TICK, RETIRE_RETRY_MS};

/// The policy's settings (`mltrader serve --split-above ... --merge-below ...`).
#[derive(Clone, Debug, Serialize)]
pub struct InstancePolicy {
    /// A system with more players than this in its primary opens an instance.
    pub split_above_players: usize,
    /// An instance with fewer players than this for the whole cool-down merges back.
    pub merge_below_players: usize,
    /// No split or merge within this long of the last one, in milliseconds; also how long an
    /// instance must stay below `merge_below_players` before it merges.
    pub cooldown_ms: u64,
    /// The most instances a system may have open, the primary included (1: never split).
    pub max_instances: u16,
}

impl Default for InstancePolicy {
    fn default() -> InstancePolicy {
        InstancePolicy {
            split_above_players: 50,
            merge_below_players: 10,
            cooldown_ms: 5_000,
            max_instances: super::limits::DEFAULT_MAX_INSTANCES,
        }
    }
}

impl InstancePolicy {
    /// A policy that never splits.
    pub fn never() -> InstancePolicy {
        InstancePolicy {
            max_instances: 1,
            ..InstancePolicy::default()
        }
    }

    /// How many players a new instance is filled to: half the split threshold.
    pub fn fill(&self) -> usize {
        (self.split_above_players / 2).max(1)
    }

    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.max_instances == 0 || self.max_instances > MAX_INSTANCES_PER_SYSTEM {
            return Err(format!(
                "max instances must be 1 to {MAX_INSTANCES_PER_SYSTEM}, not {}",
                self.max_instances
            ));
        }
        if self.split_above_players < 2 {
            return Err("the split threshold must be at least 2 players".into());
        }
        if self.merge_below_players >= self.fill() {
            return Err(format!(
                "the merge threshold ({} players) must be less than {}, half of the split \
                 threshold of {} rounded down: a new instance starts with that many players and \
                 must not merge back at once",
                self.merge_below_players,
                self.fill(),
                self.split_above_players
            ));
        }
        Ok(())
    }
}

/// What an instance reports to its primary at each of its ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceLoad {
    /// Players in it.
    pub players: usize,
    /// Jumps prepared there, not yet known committed.
    pub departing: usize,
    /// Committed jumps (moves) on their way there.
    pub incoming: usize,
    /// The highest move from the primary that landed there.
    pub landed_from_primary: Xfer,
}

/// What the primary knows of one open instance.
#[derive(Clone, Debug, Default)]
pub struct OpenInstance {
    /// Its shard runs (a split is recorded first; the shard starts once that is durable).
    pub ready: bool,
    /// It was told to merge: no more moves towards it; it retires once empty.
    pub closing: bool,
    /// A retire question is on its way to it.
    pub retiring: bool,
    /// When the last retire question was sent.
    pub retire_asked_ms: Option<u64>,
    /// Its last report.
    pub load: InstanceLoad,
    /// Moves the primary prepared towards it that its reports do not show landed yet.
    pub sent: BTreeSet<Xfer>,
    /// Since when it has held fewer players than the merge threshold.
    pub low_since_ms: Option<u64>,
}

impl OpenInstance {
    /// Players it holds or will hold once the moves on their way land: those it reported,
    /// and the moves towards it that it has not reported landed (the primary's count of the
    /// moves it sent, or the instance's count of those committed on their way, whichever is
    /// higher: after a restart the primary has sent nothing yet, but moves committed before
    /// the crash still land there).
    pub fn players(&self) -> usize {
        self.load.players + self.sent.len().max(self.load.incoming)
    }
}

/// A primary's table of its open instances, and when it last split or merged.
#[derive(Clone, Debug, Default)]
pub struct InstanceTable {
    pub open: BTreeMap<u16, OpenInstance>,
    pub last_change_ms: Option<u64>,
}

impl InstanceTable {
    /// The table of a primary whose state lists `open` (after a restart: their shards run;
    /// their loads are [`InstanceTable::restore`]d before the primary's first tick).
    pub fn new(open: &BTreeSet<u16>) -> InstanceTable {
        InstanceTable {
            open: open
                .iter()
                .map(|&n| {
                    let i = OpenInstance {
                        ready: true,
                        ..OpenInstance::default()
                    };
                    (n, i)
                })
                .collect(),
            last_change_ms: None,
        }
    }

    /// Notes a report of instance `n`.
    pub fn report(&mut self, n: u16, load: InstanceLoad) {
        if let Some(i) = self.open.get_mut(&n) {
            i.sent.retain(|&x| x > load.landed_from_primary);
            i.load = load;
        }
    }

    /// After a restart: the load recovery found in each open instance (as if each had
    /// reported), so that the first plan sees the instances as they are, not empty.
    pub fn restore(&mut self, loads: impl IntoIterator<Item = (u16, InstanceLoad)>) {
        for (n, load) in loads {
            self.report(n, load);
        }
    }

    /// What the policy sees.
    pub fn views(&self) -> Vec<InstanceView> {
        self.open
            .iter()
            .map(|(&n, i)| InstanceView {
                n,
                players: i.players(),
                ready: i.ready,
                closing: i.closing,
                low_since_ms: i.low_since_ms,
            })
            .collect()
    }

    /// Updates since when each instance has been below the merge threshold.
    pub fn watch_low(&mut self, policy: &InstancePolicy, now_ms: u64) {
        for i in self.open.values_mut() {
            if i.players() < policy.merge_below_players && i.ready {
                i.low_since_ms.get_or_insert(now_ms);
            } else {
                i.low_since_ms = None;
            }
        }
    }
}

/// One open instance, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub n: u16,
    /// Players there, moves on their way included.
    pub players: usize,
    pub ready: bool,
    pub closing: bool,
    pub low_since_ms: Option<u64>,
}

/// What the primary knows when it plans.
#[derive(Clone, Copy, Debug)]
pub struct PrimaryView<'a> {
    pub now_ms: u64,
    /// Players in the primary.
    pub players: usize,
    /// Its clock's dilation factor.
    pub dilation: f64,
    pub last_change_ms: Option<u64>,
    pub instances: &'a [InstanceView],
}

/// One step the policy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Open instance `n`.
    Split(u16),
    /// Move `players` players from the primary to instance `n`.
    Fill { n: u16, players: usize },
    /// Tell instance `n` to move everyone back.
    Merge(u16),
    /// Ask instance `n`, closing and empty, to stop; then record its retirement.
    Retire(u16),
}

/// The steps to take now. Pure: the same view gives the same steps.
pub fn plan(policy: &InstancePolicy, view: &PrimaryView<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in view.instances {
        if i.closing && i.players == 0 {
            steps.push(Step::Retire(i.n));
        }
    }
    let cooled = view
        .last_change_ms
        .is_none_or(|t| view.now_ms >= t.saturating_add(policy.cooldown_ms));
    let fill = policy.fill();
    let dilated = view.dilation < DILATED_BELOW;
    let crowded = view.players > policy.split_above_players || (dilated && view.players > fill);
    if crowded {
        // Crowded: the primary goes down to `fill` (to half its players when its clock is
        // dilated), into open instances with room first, then new ones.
        let target = match view.players > policy.split_above_players {
            true => fill,
            false => view.players / 2,
        };
        let mut excess = (view.players - target).min(MAX_MOVES_PER_TICK);
        let mut after = view.players;
        for i in view.instances {
            if excess == 0 {
                break;
            }
            if i.ready && !i.closing && i.players < fill {
                let take = (fill - i.players).min(excess);
                steps.push(Step::Fill {
                    n: i.n,
                    players: take,
                });
                excess -= take;
                after -= take;
            }
        }
        // Instances not ready yet are filled once they are: count their room as taken.
        let pending: usize = view
            .instances
            .iter()
            .filter(|i| !i.ready && !i.closing)
            .map(|i| fill.saturating_sub(i.players))
            .sum();
        excess = excess.saturating_sub(pending);
        after = after.saturating_sub(pending);
        // As many new instances as fill up whole; at least one if the primary would stay
        // crowded (or dilated) without it.
        let still_crowded = after > policy.split_above_players || (dilated && after > fill);
        let mut wanted = excess / fill;
        if still_crowded && excess > 0 {
            wanted = wanted.max(1);
        }
        let open = 1 + view.instances.len();
        let room = usize::from(policy.max_instances).saturating_sub(open);
        if wanted > 0 && cooled {
            let taken: BTreeSet<u16> = view.instances.iter().map(|i| i.n).collect();
            let free = (PRIMARY_INSTANCE + 1..=policy.max_instances).filter(|n| !taken.contains(n));
            steps.extend(free.take(wanted.min(room)).map(Step::Split));
        }
        return steps;
    }
    if !cooled {
        return steps;
    }
    // Merge what stayed low for the whole cool-down, smallest first, while the primary stays
    // uncrowded.
    let mut low: Vec<&InstanceView> = view
        .instances
        .iter()
        .filter(|i| {
            i.ready
                && !i.closing
                && i.low_since_ms
                    .is_some_and(|t| view.now_ms >= t.saturating_add(policy.cooldown_ms))
        })
        .collect();
    low.sort_by_key(|i| (i.players, i.n));
    let mut total = view.players;
    for i in low {
        if total + i.players > policy.split_above_players {
            break;
        }
        total += i.players;
        steps.push(Step::Merge(i.n));
    }
    steps
}

/// The players of `state` in groups that must stay together: players joined by standing attack
/// orders (either way, transitively) are one group; everyone else is a group alone. Sorted by
/// size, then name: players in no fight first.
pub fn groups(state: &SystemState) -> Vec<Vec<String>> {
    let names: Vec<&String> = state.players.keys().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..names.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (attacker, target) in &state.engaged {
        if let (Some(&a), Some(&b)) = (index.get(attacker.as_str()), index.get(target.as_str())) {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut by_root: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let r = root(&mut parent, i);
        by_root.entry(r).or_default().push((*name).clone());
    }
    let mut out: Vec<Vec<String>> = by_root.into_values().collect();
    out.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a[0].cmp(&b[0])));
    out
}

/// Up to `count` players of `state` to move, whole groups only ([`groups`]), none of whom
/// `can_move` refuses (a ship shot down, a trade under way): a group with such a member stays.
pub fn pick_movers(
    state: &SystemState,
    count: usize,
    can_move: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for group in groups(state) {
        if out.len() + group.len() > count {
            // Groups are sorted by size: no later one fits either.
            break;
        }
        if group.iter().all(|n| can_move(n)) {
            out.extend(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::galaxy::Galaxy;
    use sim::player::Player;
    use sim::rules::Rules;

    fn policy() -> InstancePolicy {
        InstancePolicy {
            cooldown_ms: 1_000,
            ..InstancePolicy::default()
        }
    }

    fn view(n: u16, players: usize) -> InstanceView {
        InstanceView {
            n,
            players,
            ready: true,
            closing: false,
            low_since_ms: None,
        }
    }

    fn primary(now_ms: u64, players: usize, instances: &[InstanceView]) -> PrimaryView<'_> {
        PrimaryView {
            now_ms,
            players,
            dilation: 1.0,
            last_change_ms: None,
            instances,
        }
    }

    #[test]
    fn the_default_policy_is_sound() {
        assert_eq!(policy().check(), Ok(()));
        assert_eq!(policy().fill(), 25);
        let bad = InstancePolicy {
            merge_below_players: 30,
            ..policy()
        };
        assert!(
            bad.check().is_err(),
            "merge above a new instance's fill would flap"
        );
    }

    #[test]
    fn a_crowded_primary_splits_and_a_quiet_one_does_not() {
        assert_eq!(plan(&policy(), &primary(0, 50, &[])), vec![]);
        assert_eq!(plan(&policy(), &primary(0, 51, &[])), vec![Step::Split(2)]);
        assert_eq!(plan(&policy(), &primary(0, 74, &[])), vec![Step::Split(2)]);
        // 1,000 players: 39 instances at once (975 to move, 25 each), if allowed.
        let many = InstancePolicy {
            max_instances: 64,
            ..policy()
        };
        let steps = plan(&many, &primary(0, 1_000, &[]));
        assert_eq!(steps.len(), 39);
        assert_eq!(steps[38], Step::Split(40));
        assert_eq!(
            plan(&policy(), &primary(0, 1_000, &[])).len(),
            15,
            "16 at most"
        );
    }

    #[test]
    fn new_instances_are_filled_to_half_the_threshold_once_ready() {
        let opening = [InstanceView {
            ready: false,
            ..view(2, 0)
        }];
        assert_eq!(
            plan(&policy(), &primary(10, 51, &opening)),
            vec![],
            "no second split while the first one opens"
        );
        let open = [view(2, 0)];
        let steps = plan(&policy(), &primary(10, 51, &open));
        assert_eq!(steps, vec![Step::Fill { n: 2, players: 25 }]);
        let full = [view(2, 25)];
        assert_eq!(plan(&policy(), &primary(10, 40, &full)), vec![]);
    }

    /// After a restart, the table starts from what recovery found: taking the instances for
    /// empty would fill them again (16 instances of 25 became 16 of 50 after a kill -9).
    #[test]
    fn a_restored_table_keeps_the_layout_it_found() {
        let mut table = InstanceTable::new(&BTreeSet::from([2, 3]));
        let full = InstanceLoad {
            players: 25,
            ..InstanceLoad::default()
        };
        // 3 holds 20, and 5 moves committed before the crash are on their way there.
        let landing = InstanceLoad {
            players: 20,
            incoming: 5,
            ..InstanceLoad::default()
        };
        table.restore([(2, full), (3, landing)]);
        assert_eq!(table.open[&3].players(), 25);
        let views = table.views();
        // Both full: the crowded primary splits (16 instances allowed), it fills no one.
        assert_eq!(
            plan(&policy(), &primary(0, 150, &views)),
            (4..=8).map(Step::Split).collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_split_or_merge_within_the_cool_down() {
        let mut v = primary(500, 60, &[]);
        v.last_change_ms = Some(0);
        assert_eq!(plan(&policy(), &v), vec![], "split waits for the cool-down");
        v.now_ms = 1_000;
        assert_eq!(plan(&policy(), &v), vec![Step::Split(2)]);
        let low = [InstanceView {
            low_since_ms: Some(0),
            ..view(2, 3)
        }];
        let mut v = primary(999, 20, &low);
        assert_eq!(
            plan(&policy(), &v),
            vec![],
            "low for less than the cool-down"
        );
        v.now_ms = 1_000;
        assert_eq!(plan(&policy(), &v), vec![Step::Merge(2)]);
        v.last_change_ms = Some(500);
        assert_eq!(plan(&policy(), &v), vec![], "a change 500 ms ago");
    }

    #[test]
    fn a_merge_never_crowds_the_primary_and_closing_instances_retire_when_empty() {
        let low = [
            InstanceView {
                low_since_ms: Some(0),
                ..view(2, 9)
            },
            InstanceView {
                low_since_ms: Some(0),
                ..view(3, 2)
            },
        ];
        assert_eq!(
            plan(&policy(), &primary(5_000, 30, &low)),
            vec![Step::Merge(3), Step::Merge(2)]
        );
        assert_eq!(
            plan(&policy(), &primary(5_000, 45, &low)),
            vec![Step::Merge(3)],
            "45 + 2 fits, 47 + 9 would crowd the primary"
        );
        let closing = [InstanceView {
            closing: true,
            ..view(2, 0)
        }];
        assert_eq!(
            plan(&policy(), &primary(5_000, 45, &closing)),
            vec![Step::Retire(2)]
        );
    }

    #[test]
    fn a_dilated_primary_splits_earlier_when_it_is_populated() {
        let mut v = primary(0, 30, &[]);
        v.dilation = 0.5;
        assert_eq!(plan(&policy(), &v), vec![Step::Split(2)]);
        let open = [view(2, 0)];
        v.instances = &open;
        assert_eq!(
            plan(&policy(), &v),
            vec![Step::Fill { n: 2, players: 15 }],
            "half of them move"
        );
        v.instances = &[];
        v.players = 20;
        assert_eq!(plan(&policy(), &v), vec![], "too few players to blame");
    }

    #[test]
    fn the_instance_count_is_bounded() {
        let p = InstancePolicy {
            max_instances: 3,
            ..policy()
        };
        let steps = plan(&p, &primary(0, 1_000, &[]));
        assert_eq!(steps, vec![Step::Split(2), Step::Split(3)]);
        let full = [view(2, 25), view(3, 25)];
        assert_eq!(plan(&p, &primary(0, 1_000, &full)), vec![]);
    }

    #[test]
    fn fighters_are_one_group_and_move_whole_or_not_at_all() {
        let g = Galaxy::default_galaxy();
        let mut s = SystemState::new(&g, g.home());
        for name in ["a", "b", "c", "d", "e", "f"] {
            let p = Player::starter(name, &Rules::default());
            s.players.insert(name.into(), p);
        }
        // a -> b, c -> b: one group of three; d <-> e: a group of two; f alone.
        s.engaged.insert("a".into(), "b".into());
        s.engaged.insert("c".into(), "b".into());
        s.engaged.insert("d".into(), "e".into());
        s.engaged.insert("e".into(), "d".into());
        let gs = groups(&s);
        assert_eq!(gs, vec![vec!["f"], vec!["d", "e"], vec!["a", "b", "c"]]);
        assert_eq!(pick_movers(&s, 1, |_| true), vec!["f"]);
        assert_eq!(pick_movers(&s, 2, |_| true), vec!["f"], "no half of d-e");
        assert_eq!(pick_movers(&s, 3, |_| true), vec!["f", "d", "e"]);
        assert_eq!(pick_movers(&s, 6, |_| true).len(), 6);
        assert_eq!(
            pick_movers(&s, 6, |n| n != "e"),
            vec!["f", "a", "b", "c"],
            "d stays with e, who cannot move"
        );
    }
}
