//! Jump lanes: every pair closer than the lane range, plus the shortest links that join the
//! groups left apart (Kruskal-style, deterministic), so every galaxy is connected. Pure
//! geometry; never does I/O.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::SystemId;

/// Euclidean distance between two positions.
pub(super) fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    (dx * dx + dy * dy + dz * dz).sqrt()
}

/// Union-find over system indices.
pub(super) struct Components {
    parent: Vec<usize>,
}

impl Components {
    pub(super) fn new(count: usize) -> Self {
        Components {
            parent: (0..count).collect(),
        }
    }

    pub(super) fn root(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    /// Joins the components of `a` and `b`; false if they were already one.
    pub(super) fn join(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return false;
        }
        self.parent[ra.max(rb)] = ra.min(rb);
        true
    }
}

/// The lanes of a galaxy: each system's neighbours, sorted by id.
pub(super) fn build_lanes(positions: &[[f64; 3]], range_ly: f64) -> Vec<Vec<SystemId>> {
    let count = positions.len();
    let mut components = Components::new(count);
    let mut pairs = Vec::new();

    // Pairs in range: sweep along x, so only pairs within range in x are
    // measured.
    let mut by_x: Vec<usize> = (0..count).collect();
    by_x.sort_by(|&a, &b| positions[a][0].total_cmp(&positions[b][0]).then(a.cmp(&b)));
    for (k, &a) in by_x.iter().enumerate() {
        for &b in &by_x[k + 1..] {
            if positions[b][0] - positions[a][0] >= range_ly {
                break;
            }
            if distance(positions[a], positions[b]) < range_ly {
                pairs.push((a.min(b), a.max(b)));
                components.join(a, b);
            }
        }
    }
    pairs.extend(joining_links(positions, &mut components));

    let mut neighbours = vec![Vec::new(); count];
    for (a, b) in pairs {
        // Indices are below count <= MAX_SYSTEMS, so they fit a u16.
        neighbours[a].push(SystemId(b as u16));
        neighbours[b].push(SystemId(a as u16));
    }
    for list in &mut neighbours {
        list.sort_unstable();
        list.dedup();
    }
    neighbours
}

/// The order in which candidate links are considered: by distance, then by
/// the lower id, then the higher. A strict total order, so the set of links
/// chosen is unique.
pub(super) type LinkKey = (f64, usize, usize);

pub(super) fn link_key(positions: &[[f64; 3]], a: usize, b: usize) -> LinkKey {
    (distance(positions[a], positions[b]), a.min(b), a.max(b))
}

/// Whether link `x` comes before link `y` in `link_key` order.
pub(super) fn link_before(x: LinkKey, y: LinkKey) -> bool {
    x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))) == Ordering::Less
}

/// Adds the nodes `added` (one whole component) to the growing tree of
/// `joining_links`, updating every outside node's closest link to the tree.
pub(super) fn absorb_component(
    positions: &[[f64; 3]],
    added: &[usize],
    in_tree: &mut [bool],
    closest: &mut [Option<LinkKey>],
    outside: &mut Vec<usize>,
) {
    for &node in added {
        in_tree[node] = true;
    }
    outside.retain(|&node| !in_tree[node]);
    for &node in added {
        for &other in outside.iter() {
            let key = link_key(positions, node, other);
            if closest[other].is_none_or(|current| link_before(key, current)) {
                closest[other] = Some(key);
            }
        }
    }
}

/// The links that join the separate components into one: exactly what
/// Kruskal's algorithm over all pairs, in `link_key` order, would add (that
/// set is unique because the order is strict), computed by Prim's algorithm
/// over components in O(n²) time and O(n) memory instead of sorting all
/// n² pairs.
pub(super) fn joining_links(
    positions: &[[f64; 3]],
    components: &mut Components,
) -> Vec<(usize, usize)> {
    let count = positions.len();
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for node in 0..count {
        members.entry(components.root(node)).or_default().push(node);
    }
    let mut links = Vec::new();
    if members.len() <= 1 {
        return links;
    }

    let root_of: Vec<usize> = (0..count).map(|node| components.root(node)).collect();
    let mut in_tree = vec![false; count];
    let mut closest: Vec<Option<LinkKey>> = vec![None; count];
    let mut outside: Vec<usize> = (0..count).collect();
    let absorb = |root: usize,
                  in_tree: &mut [bool],
                  closest: &mut [Option<LinkKey>],
                  outside: &mut Vec<usize>| {
        let added = members.get(&root).map_or(&[][..], Vec::as_slice);
        absorb_component(positions, added, in_tree, closest, outside);
    };
    absorb(root_of[0], &mut in_tree, &mut closest, &mut outside);
    while !outside.is_empty() {
        let mut next: Option<LinkKey> = None;
        for &node in &outside {
            if let Some(key) = closest[node] {
                if next.is_none_or(|current| link_before(key, current)) {
                    next = Some(key);
                }
            }
        }
        let Some((_, a, b)) = next else {
            // Unreachable: once the tree has a node, every node outside it
            // has a closest link to it.
            break;
        };
        links.push((a, b));
        let newcomer = if in_tree[a] { b } else { a };
        absorb(root_of[newcomer], &mut in_tree, &mut closest, &mut outside);
    }
    for &(a, b) in &links {
        components.join(a, b);
    }
    links
}
