//! Which node serves which unit: rendezvous (highest random weight) hashing of units over the
//! live nodes (issue 19, decision 4).
//!
//! Every unit (a star system with its instances, named `sys.<slug>`: [`unit_of_system`]) goes
//! to the live node whose weight for it, [`weight`]`(node, unit)`, is the highest. Every node
//! computes the same answer from the same list of live nodes, without talking to the others,
//! and the answer moves as little as it can: when a node joins, only units whose new highest
//! weight is the newcomer's move (to it); when a node leaves, only its own units move (each to
//! its second highest). [`moves`] says which.
//!
//! The weight must be the same in every process, on every machine and with every Rust
//! version, or two nodes would deal differently: it is XXH3-64 (a frozen, specified function:
//! its output is part of xxHash's format since 0.8.0) of an unambiguous encoding of the pair,
//! never `std`'s `DefaultHasher` (whose algorithm and keys may change between releases).
//!
//! Pure: never does I/O, never reads a clock, never decides who is live (that is
//! [`super::members`]); it is given the live nodes.

use std::collections::{BTreeMap, BTreeSet};

/// The most nodes a deal is computed over. A deal costs one hash per (unit, node) pair, and
/// every node computes it again after each change of membership.
pub const MAX_NODES: usize = 1_024;

/// The most units dealt at once (a galaxy's systems).
pub const MAX_UNITS: usize = 1_000_000;

/// The prefix of a unit's name: a unit is one star system with its instances (decision 1).
pub const UNIT_PREFIX: &str = "sys.";

/// The unit of the system whose slug is `slug` (as in its log's name `systems/<slug>`).
pub fn unit_of_system(slug: &str) -> String {
    assert!(!slug.is_empty(), "a system has a slug");
    format!("{UNIT_PREFIX}{slug}")
}

/// The weight of `node` for `unit`: XXH3-64 of the node's length (8 bytes, little endian),
/// the node's bytes, then the unit's bytes. The length first makes the encoding of the pair
/// unambiguous (`("ab", "c")` and `("a", "bc")` hash different bytes).
pub fn weight(node: &str, unit: &str) -> u64 {
    let mut bytes = Vec::with_capacity(8 + node.len() + unit.len());
    bytes.extend_from_slice(&(node.len() as u64).to_le_bytes());
    bytes.extend_from_slice(node.as_bytes());
    bytes.extend_from_slice(unit.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The node that serves `unit` among `nodes` (the live ones): the one of highest weight, ties
/// (two equal 64-bit weights) going to the greater name so that the answer never depends on
/// the order of `nodes`. None when no node is live. A name listed twice counts once.
pub fn owner_of<'a, N: AsRef<str>>(unit: &str, nodes: &'a [N]) -> Option<&'a str> {
    assert!(!unit.is_empty(), "a unit has a name");
    assert!(
        nodes.len() <= MAX_NODES,
        "{} nodes: more than MAX_NODES ({MAX_NODES})",
        nodes.len()
    );
    nodes
        .iter()
        .map(|node| {
            let node = node.as_ref();
            assert!(!node.is_empty(), "a node has a name");
            (weight(node, unit), node)
        })
        .max()
        .map(|(_, node)| node)
}

/// The units each node serves: every node of `nodes` is a key (with no unit, if it wins none),
/// each unit is in exactly one list, and the lists keep the order of `units`. Empty when no
/// node is live. A unit listed twice is dealt once.
pub fn deal<N: AsRef<str>, U: AsRef<str>>(
    units: &[U],
    nodes: &[N],
) -> BTreeMap<String, Vec<String>> {
    assert!(
        units.len() <= MAX_UNITS,
        "{} units: more than MAX_UNITS ({MAX_UNITS})",
        units.len()
    );
    let mut dealt: BTreeMap<String, Vec<String>> = nodes
        .iter()
        .map(|node| (node.as_ref().to_string(), Vec::new()))
        .collect();
    let mut seen = BTreeSet::new();
    for unit in units {
        let unit = unit.as_ref();
        if !seen.insert(unit) {
            continue;
        }
        let Some(owner) = owner_of(unit, nodes) else {
            return BTreeMap::new();
        };
        dealt
            .get_mut(owner)
            .expect("the owner is one of the nodes")
            .push(unit.to_string());
    }
    assert_eq!(
        dealt.values().map(Vec::len).sum::<usize>(),
        seen.len(),
        "every unit is dealt to exactly one node"
    );
    dealt
}

/// One unit that changes hands when the live nodes change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub unit: String,
    /// Who served it before (None: no node was live).
    pub from: Option<String>,
    /// Who serves it after (None: no node is live any more).
    pub to: Option<String>,
}

/// The units of `units` whose owner differs between the live nodes `before` and `after`, in
/// the order of `units` (a unit listed twice counts once). With rendezvous hashing a join
/// moves units only to the newcomer, and a leave moves only the leaver's units.
pub fn moves<B: AsRef<str>, A: AsRef<str>, U: AsRef<str>>(
    before: &[B],
    after: &[A],
    units: &[U],
) -> Vec<Move> {
    let mut seen = BTreeSet::new();
    units
        .iter()
        .map(AsRef::as_ref)
        .filter(|unit| seen.insert(*unit))
        .filter_map(|unit| {
            let from = owner_of(unit, before);
            let to = owner_of(unit, after);
            (from != to).then(|| Move {
                unit: unit.to_string(),
                from: from.map(str::to_string),
                to: to.map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fairness bound, from `fairness_measure` below (200,000 random sets of node names for
    /// each count of 3 to 10 nodes, 100 units each; the lowest and highest share seen, in
    /// units/nodes): 3 nodes 0.36-1.71, 4: 0.28-1.80, 5: 0.15-2.05, 6: 0.12-2.28, 7: 0.00-2.31,
    /// 8: 0.00-2.40, 9: 0.00-2.52, 10: 0.00-2.80. So with 100 units no node holds more than
    /// FAIR_HIGH times its fair share, and with 3 or 4 nodes none holds less than FAIR_LOW
    /// times it; from 7 nodes on a node may win none of 100 units (rendezvous hashing is fair
    /// on average: a share is binomial, its spread shrinks only with more units per node).
    const FAIR_HIGH: f64 = 3.0;
    const FAIR_LOW: f64 = 0.2;
    const FAIR_LOW_UP_TO_NODES: usize = 4;

    fn units(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| unit_of_system(&format!("s{i}")))
            .collect()
    }

    /// Distinct node names of 1 to 12 characters.
    fn node_names(range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z0-9-]{1,12}", range)
            .prop_map(|names| names.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
    }

    #[test]
    fn the_weight_is_the_same_on_every_machine() {
        // Fixed values: a change of the hash (or of the encoding) would deal every unit anew
        // on a node running the new code, while the others deal as before. Both were
        // computed apart from this crate too, by xxHash's C library (Python `xxhash` 4.1.0:
        // `xxh3_64_intdigest(struct.pack('<Q', len(node)) + node + unit)`).
        assert_eq!(weight("alpha", "sys.sol"), 0xf434_fb98_824a_e921);
        assert_eq!(weight("beta", "sys.sol"), 0x4700_7aa3_b2a9_fa9e);
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
    }

    #[test]
    fn no_live_node_serves_nothing() {
        let none: [&str; 0] = [];
        assert_eq!(owner_of("sys.sol", &none), None);
        assert!(deal(&units(5), &none).is_empty());
        let m = moves(&none, &["a"], &["sys.sol"]);
        assert_eq!(
            m,
            vec![Move {
                unit: "sys.sol".into(),
                from: None,
                to: Some("a".into())
            }]
        );
    }

    proptest! {
        #[test]
        fn every_unit_has_exactly_one_owner_among_the_live_nodes(
            nodes in node_names(1..12),
            count in 0usize..200,
        ) {
            let units = units(count);
            let dealt = deal(&units, &nodes);
            prop_assert_eq!(dealt.len(), nodes.len(), "every live node is in the deal");
            for unit in &units {
                let holders: Vec<&String> = dealt
                    .iter()
                    .filter(|(_, held)| held.contains(unit))
                    .map(|(node, _)| node)
                    .collect();
                prop_assert_eq!(holders.len(), 1, "{} is held by {:?}", unit, holders);
                let owner = owner_of(unit, &nodes).unwrap();
                prop_assert_eq!(holders[0].as_str(), owner);
                let best = nodes.iter().map(|n| weight(n, unit)).max().unwrap();
                prop_assert_eq!(weight(owner, unit), best, "the highest weight wins");
            }
            let mut reversed = nodes.clone();
            reversed.reverse();
            prop_assert_eq!(deal(&units, &reversed), dealt, "the order of the nodes does not matter");
        }

        #[test]
        fn a_join_moves_units_only_to_the_newcomer(
            nodes in node_names(2..12),
            count in 1usize..200,
        ) {
            let units = units(count);
            let (newcomer, before) = nodes.split_last().unwrap();
            let moved = moves(before, &nodes, &units);
            for m in &moved {
                prop_assert_eq!(m.to.as_deref(), Some(newcomer.as_str()), "{:?}", m);
            }
            let dealt = deal(&units, &nodes);
            prop_assert_eq!(moved.len(), dealt[newcomer].len(), "the newcomer gets only moved units");
        }

        #[test]
        fn a_leave_moves_only_the_leavers_units(
            nodes in node_names(2..12),
            count in 1usize..200,
            which in any::<prop::sample::Index>(),
        ) {
            let units = units(count);
            let leaver = &nodes[which.index(nodes.len())];
            let after: Vec<&String> = nodes.iter().filter(|n| *n != leaver).collect();
            let moved = moves(&nodes, &after, &units);
            for m in &moved {
                prop_assert_eq!(m.from.as_deref(), Some(leaver.as_str()), "{:?}", m);
            }
            let dealt = deal(&units, &nodes);
            prop_assert_eq!(moved.len(), dealt[leaver].len(), "every unit of the leaver moves");
        }

        #[test]
        fn each_node_gets_a_fair_share_of_100_units(nodes in node_names(3..11)) {
            let units = units(100);
            let fair = 100.0 / nodes.len() as f64;
            let low = if nodes.len() <= FAIR_LOW_UP_TO_NODES { FAIR_LOW } else { 0.0 };
            for (node, held) in deal(&units, &nodes) {
                let share = held.len() as f64 / fair;
                prop_assert!(
                    (low..=FAIR_HIGH).contains(&share),
                    "{} holds {} of 100 units over {} nodes: {:.2} times its fair share",
                    node, held.len(), nodes.len(), share
                );
            }
        }
    }

    /// Measures the fairness bound: `cargo test --release -p mltrader-mesh deal::tests::fairness_measure
    /// -- --ignored --nocapture` (MLTRADER_DEAL_SETS sets of node names per node count).
    #[test]
    #[ignore]
    fn fairness_measure() {
        let sets: usize = std::env::var("MLTRADER_DEAL_SETS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200_000);
        let units = units(100);
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for count in 3..=10usize {
            let (mut low, mut high) = (f64::MAX, 0.0f64);
            for _ in 0..sets {
                let nodes: Vec<String> = (0..count)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        format!("n{rng:x}")
                    })
                    .collect();
                let fair = 100.0 / count as f64;
                for held in deal(&units, &nodes).values() {
                    let share = held.len() as f64 / fair;
                    low = low.min(share);
                    high = high.max(share);
                }
            }
            println!(
                "{count} nodes, {sets} sets: shares from {low:.2} to {high:.2} of units/nodes"
            );
        }
    }
}
