//! Which nodes are live, as an observer judges it from polls of the members' keys (issue 19,
//! decisions 2 and 4): [`Roster`].
//!
//! Every node announces itself with a key of its own (its name) that it renews every quarter
//! of a period; the host polls the keys and tells the roster what each poll found. A member
//! is gone when
//! - an answered poll finds its key deleted or absent (it left cleanly: gone at once), or
//! - its key's revision has not changed for a whole period counted only while the store
//!   demonstrably takes writes: over polls the store answered (decision 2: a poll that got no
//!   answer starts every count again) and only from the first answered poll, after the
//!   member's last change, that shows another key written. An election stalls every KV read
//!   and write for seconds, and then some servers route writes to the new leader seconds
//!   after others answer reads (measured: members' renewals refused "no stream found for given
//!   subject" for more than 2 s while an observer's polls were answered; with the count of
//!   decision 2 alone, both members were judged gone in 7 runs of 17, 2.1 to 6.6 s after the
//!   kill): silence that every member shares is the store's, never the nodes'.
//!
//! So a member is judged gone only while others are seen renewing; an observer is itself a
//! member and renews, so in a galaxy its own renewals are such writes ("count silence only
//! while your own KV writes succeed", DISTRIBUTED.md). A member judged gone by silence is live
//! again when its key's revision changes (it renews after all, or restarts and announces
//! itself). A new roster gives every member a whole period of others' writes. A member whose
//! own writes fail for a whole period while others' get through (its server cannot reach the
//! leader, say) is judged gone, as a member cut off is: that is a partial fault, not the store
//! electing, and its units must move.
//!
//! Pure: never does I/O, never reads a clock (times are given in milliseconds of the host's
//! clock; only differences between them matter), never decides what a node serves (that is
//! [`super::deal`]).

use std::collections::BTreeMap;

use super::deal::MAX_NODES;

/// What one answered poll found of a member's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The key's revision (its last write: the announcement or the last renewal).
    pub revision: u64,
}

/// One member's key as the roster follows it.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    /// The revision last seen.
    revision: u64,
    /// Since when its silence counts: the first answered poll after its last change that saw
    /// another key written (None: not counting: no such poll yet, or an unanswered poll since).
    counting_from_ms: Option<u64>,
}

/// The live members, as one observer judges them.
#[derive(Clone, Debug)]
pub struct Roster {
    period_ms: u64,
    /// The keys present at the last answered poll.
    members: BTreeMap<String, Tracked>,
}

impl Roster {
    /// A roster with a period of `period_ms`: a member silent that long is gone.
    pub fn new(period_ms: u64) -> Roster {
        assert!(period_ms > 0, "a period lasts some time");
        Roster {
            period_ms,
            members: BTreeMap::new(),
        }
    }

    /// A poll the store answered, returned at `now_ms`, found these keys (deleted ones left
    /// out).
    pub fn answered(&mut self, present: BTreeMap<String, Seen>, now_ms: u64) {
        assert!(
            present.len() <= MAX_NODES,
            "{} members: more than MAX_NODES ({MAX_NODES})",
            present.len()
        );
        // The keys written since the last answered poll: new, changed or deleted.
        let mut written: Vec<&str> = present
            .iter()
            .filter(|(node, seen)| {
                assert!(seen.revision > 0, "{node}: a KV revision counts from 1");
                self.members
                    .get(node.as_str())
                    .is_none_or(|t| t.revision != seen.revision)
            })
            .map(|(node, _)| node.as_str())
            .collect();
        written.extend(
            self.members
                .keys()
                .filter(|node| !present.contains_key(node.as_str()))
                .map(String::as_str),
        );
        let members = present
            .iter()
            .map(|(node, seen)| {
                let tracked = match self.members.get(node.as_str()) {
                    Some(t) if t.revision == seen.revision => {
                        // This key is unchanged, so every key written is another's.
                        debug_assert!(!written.contains(&node.as_str()));
                        let others_wrote = !written.is_empty();
                        Tracked {
                            revision: t.revision,
                            counting_from_ms: t.counting_from_ms.or(others_wrote.then_some(now_ms)),
                        }
                    }
                    // New or changed: it writes, so it is live, and its count waits for a
                    // later poll that sees another key written.
                    _ => Tracked {
                        revision: seen.revision,
                        counting_from_ms: None,
                    },
                };
                (node.clone(), tracked)
            })
            .collect();
        // A key gone from the bucket left cleanly (or was forgotten): gone at once.
        self.members = members;
    }

    /// A poll got no answer: every count starts again.
    pub fn unanswered(&mut self) {
        for tracked in self.members.values_mut() {
            tracked.counting_from_ms = None;
        }
    }

    /// How long `tracked` has been silent at `now_ms`, counted as the module says.
    fn silent_ms(&self, tracked: &Tracked, now_ms: u64) -> u64 {
        tracked
            .counting_from_ms
            .map_or(0, |from| now_ms.saturating_sub(from))
    }

    /// The live members at `now_ms`, by name: present at the last answered poll and not silent
    /// for a whole period.
    pub fn live(&self, now_ms: u64) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, t)| self.silent_ms(t, now_ms) < self.period_ms)
            .map(|(node, _)| node.as_str())
            .collect()
    }

    /// The members present but silent for a whole period at `now_ms` (dead, paused or cut
    /// off), with the revision they fell silent at.
    pub fn silent(&self, now_ms: u64) -> Vec<(&str, u64)> {
        self.members
            .iter()
            .filter(|(_, t)| self.silent_ms(t, now_ms) >= self.period_ms)
            .map(|(node, t)| (node.as_str(), t.revision))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD_MS: u64 = 1_000;

    fn poll(keys: &[(&str, u64)]) -> BTreeMap<String, Seen> {
        keys.iter()
            .map(|(node, revision)| {
                (
                    node.to_string(),
                    Seen {
                        revision: *revision,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_member_that_renews_stays_live() {
        let mut roster = Roster::new(PERIOD_MS);
        for (i, now) in (0..10_000).step_by(250).enumerate() {
            roster.answered(poll(&[("a", 1 + i as u64), ("b", 100 + i as u64)]), now);
            assert_eq!(roster.live(now), vec!["a", "b"], "at {now} ms");
        }
    }

    #[test]
    fn a_silent_member_is_gone_after_a_whole_period_of_others_writes() {
        let mut roster = Roster::new(PERIOD_MS);
        roster.answered(poll(&[("a", 1), ("b", 2)]), 0);
        // a renews, b does not: b's count starts at the first poll that sees a's write.
        for (i, now) in (250..=1_000).step_by(250).enumerate() {
            roster.answered(poll(&[("a", 3 + i as u64), ("b", 2)]), now);
            assert_eq!(roster.live(now), vec!["a", "b"], "at {now} ms");
        }
        assert_eq!(roster.live(1_249), vec!["a", "b"]);
        roster.answered(poll(&[("a", 10), ("b", 2)]), 1_250);
        assert_eq!(roster.live(1_250), vec!["a"]);
        assert_eq!(roster.silent(1_250), vec![("b", 2)]);
        // It renews after all: live again.
        roster.answered(poll(&[("a", 11), ("b", 12)]), 1_500);
        assert_eq!(roster.live(1_500), vec!["a", "b"]);
        assert!(roster.silent(1_500).is_empty());
    }

    #[test]
    fn a_member_that_deleted_its_key_is_gone_at_once() {
        let mut roster = Roster::new(PERIOD_MS);
        roster.answered(poll(&[("a", 1), ("b", 2)]), 0);
        roster.answered(poll(&[("a", 3)]), 10);
        assert_eq!(roster.live(10), vec!["a"]);
        assert!(roster.silent(10).is_empty());
    }

    #[test]
    fn unanswered_polls_never_make_a_member_gone() {
        // An election: no poll answered for 8 periods, nobody renews meanwhile.
        let mut roster = Roster::new(PERIOD_MS);
        roster.answered(poll(&[("a", 1), ("b", 2)]), 0);
        roster.answered(poll(&[("a", 3), ("b", 2)]), 900);
        for _ in 0..32 {
            roster.unanswered();
        }
        // The store answers again: the counts start once someone is seen writing.
        roster.answered(poll(&[("a", 3), ("b", 2)]), 8_900);
        assert_eq!(roster.live(8_900), vec!["a", "b"]);
        roster.answered(poll(&[("a", 7), ("b", 2)]), 9_100);
        assert_eq!(roster.live(10_099), vec!["a", "b"]);
        // b never renews again: gone a whole period of a's writes after the election.
        roster.answered(poll(&[("a", 8), ("b", 2)]), 10_100);
        assert_eq!(roster.live(10_100), vec!["a"]);
    }

    #[test]
    fn silence_that_every_member_shares_is_the_stores() {
        // Polls answered, but nobody's renewal gets through (the servers route writes to a new
        // leader seconds after they answer reads): as seen against a real cluster.
        let mut roster = Roster::new(PERIOD_MS);
        roster.answered(poll(&[("a", 1), ("b", 2)]), 0);
        for now in (250..20_000).step_by(250) {
            roster.answered(poll(&[("a", 1), ("b", 2)]), now);
            assert_eq!(roster.live(now), vec!["a", "b"], "at {now} ms");
        }
        // Writes flow again: both renew within a quarter period, nobody was gone.
        roster.answered(poll(&[("a", 5), ("b", 2)]), 20_000);
        roster.answered(poll(&[("a", 5), ("b", 6)]), 20_250);
        assert_eq!(roster.live(20_250), vec!["a", "b"]);
    }

    #[test]
    fn a_member_whose_key_appears_is_live_at_once() {
        let mut roster = Roster::new(PERIOD_MS);
        roster.answered(poll(&[("a", 1)]), 0);
        roster.answered(poll(&[("a", 1), ("c", 9)]), 5_000);
        assert_eq!(roster.live(5_000), vec!["a", "c"]);
        // a had been silent, but its count starts only now (c's write): a period to go.
        assert_eq!(roster.live(5_999), vec!["a", "c"]);
        roster.answered(poll(&[("a", 1), ("c", 10)]), 6_000);
        assert_eq!(roster.live(6_000), vec!["c"]);
    }

    /// The store at one step of a simulated run.
    #[derive(Clone, Copy, Debug)]
    enum Store {
        /// Writes go through, polls are answered.
        Up,
        /// Electing: no write goes through, but polls are answered (some servers answer
        /// reads before writes reach the new leader).
        ReadsOnly,
        /// Electing: nothing is answered.
        Down,
    }

    const STEP_MS: u64 = 250;

    fn store() -> impl proptest::strategy::Strategy<Value = Vec<Store>> {
        use proptest::prelude::*;
        // Runs of one state, of 1 to 40 steps (up to 10 periods).
        proptest::collection::vec(
            (
                prop_oneof![Just(Store::Up), Just(Store::ReadsOnly), Just(Store::Down)],
                1usize..40,
            ),
            1..8,
        )
        .prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(state, len)| std::iter::repeat_n(state, len))
                .collect()
        })
    }

    proptest::proptest! {
        /// Members renew at every step the store takes writes; some die at a step of their
        /// own. Whatever the store does, a living member is never judged gone, and once the
        /// store has been up for a period and two polls, every dead member is.
        #[test]
        fn only_the_dead_are_judged_gone_whatever_the_store_does(
            deaths in proptest::collection::vec(proptest::option::of(0usize..200), 2..6),
            states in store(),
        ) {
            // Someone lives, and every death falls before the store settles up.
            let deaths: Vec<Option<usize>> = deaths
                .iter()
                .enumerate()
                .map(|(i, d)| d.filter(|d| i > 0 && *d < states.len()))
                .collect();
            let names: Vec<String> = (0..deaths.len()).map(|i| format!("n{i}")).collect();
            let mut revisions: Vec<u64> = (1..=deaths.len() as u64).collect();
            let mut next_revision = deaths.len() as u64 + 1;
            let mut roster = Roster::new(PERIOD_MS);
            let settle = (PERIOD_MS / STEP_MS) as usize + 2;
            let states: Vec<Store> = states
                .into_iter()
                .chain(std::iter::repeat_n(Store::Up, settle))
                .collect();
            for (step, state) in states.iter().enumerate() {
                let now = step as u64 * STEP_MS;
                if matches!(state, Store::Up) {
                    for (i, death) in deaths.iter().enumerate() {
                        if death.is_none_or(|d| step < d) {
                            revisions[i] = next_revision;
                            next_revision += 1;
                        }
                    }
                }
                if matches!(state, Store::Down) {
                    roster.unanswered();
                    continue;
                }
                let keys = names
                    .iter()
                    .zip(&revisions)
                    .map(|(n, r)| (n.clone(), Seen { revision: *r }))
                    .collect();
                roster.answered(keys, now);
                let live = roster.live(now);
                for (i, death) in deaths.iter().enumerate() {
                    if death.is_none_or(|d| step < d) {
                        proptest::prop_assert!(
                            live.contains(&names[i].as_str()),
                            "{} is alive but judged gone at step {step} ({state:?})",
                            names[i]
                        );
                    }
                }
            }
            let end = (states.len() as u64 - 1) * STEP_MS;
            let live = roster.live(end);
            for (i, death) in deaths.iter().enumerate() {
                let dead = death.is_some();
                proptest::prop_assert_eq!(
                    !live.contains(&names[i].as_str()),
                    dead,
                    "{} (death {:?}) at the end, live {:?}",
                    names[i],
                    death,
                    live
                );
            }
        }
    }
}
