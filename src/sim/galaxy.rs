//! The galaxy: the star systems of the game, where they are, the jump lanes
//! between them, and looking systems up by name.
//!
//! This module owns:
//!
//! - the list of star systems ([`StarSystem`]), addressed by [`SystemId`]
//!   (an index into that list, stable for a given galaxy file);
//! - their positions in light years and the distances between them;
//! - the jump lanes: which systems a ship can jump between directly, and
//!   shortest routes along them;
//! - names: each system's display name, its file-safe slug, and forgiving
//!   lookup of what a player typed ([`Galaxy::lookup`]).
//!
//! It is pure and deterministic: it never does I/O (parsing takes the text
//! of a galaxy file; the caller reads the file), never reads a clock and never
//! uses randomness. The same galaxy file always gives the same ids, lanes and
//! routes, on every machine of the mesh.
//!
//! # Galaxy files
//!
//! A galaxy file is TOML:
//!
//! ```toml
//! home = "Sol"            # optional: where new players start; default: the first system
//! lane_range_ly = 7.0     # optional: systems closer than this get a lane; default: DEFAULT_LANE_RANGE_LY
//!
//! [[system]]
//! name = "Sol"                       # any UTF-8, 1 to 64 bytes, unique ignoring case
//! position_ly = [0.0, 0.0, 0.0]      # x, y, z in light years
//!
//! [[system]]
//! name = "Alpha Centauri"
//! position_ly = [-1.63, -1.37, -3.82]
//! ```
//!
//! Systems get ids in file order, starting at 0. `home` may name a system
//! by its name (any case) or its slug. Every problem found in a file is
//! reported as a [`GalaxyError`] naming the line of the file where it is.
//!
//! # Lanes
//!
//! Every pair of systems closer than `lane_range_ly` gets a lane. If the
//! systems are not then all connected, the shortest possible links between
//! the separate groups are added (Kruskal-style over all pairs, ordered by
//! distance then by ids, so the result is deterministic) until they are:
//! every galaxy is connected.
//!
//! The built-in galaxy ([`Galaxy::default_galaxy`]) is `galaxy_stars.toml`
//! beside this file: real stars near Sol, at their real positions.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Systems closer than this many light years get a jump lane, unless the
/// galaxy file sets `lane_range_ly`.
pub const DEFAULT_LANE_RANGE_LY: f64 = 8.0;

/// The most systems a galaxy can have (ids are `u16`).
pub const MAX_SYSTEMS: usize = u16::MAX as usize;

/// The longest a system name may be, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;

/// The largest absolute value of a position coordinate, in light years.
/// Far beyond any real galaxy; it keeps every distance and travel time finite
/// and representable.
pub const MAX_COORDINATE_LY: f64 = 1_000_000.0;

/// The built-in galaxy file.
pub const BUILTIN_STARS: &str = include_str!("galaxy_stars.toml");

/// A star system of one galaxy: an index into that galaxy's list of systems,
/// in the order of the galaxy file.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SystemId(pub u16);

impl SystemId {
    /// The index of this system in its galaxy's list of systems.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One star system: what the galaxy knows about it.
#[derive(Clone, Debug, Serialize)]
pub struct StarSystem {
    /// The display name, as written in the galaxy file ("Barnard's Star").
    pub name: String,
    /// The file-safe name: lowercase ASCII letters, digits and '-'
    /// ("barnard-s-star"); unique within the galaxy.
    pub slug: String,
    /// Position in light years: x, y, z (equatorial, Sol at the origin in the
    /// built-in galaxy).
    pub position_ly: [f64; 3],
}

/// The galaxy: its star systems, the jump lanes between them and the home
/// system. Built from a galaxy file by [`Galaxy::from_toml_str`], or the
/// built-in one by [`Galaxy::default_galaxy`]; never changes afterwards.
#[derive(Clone, Debug)]
pub struct Galaxy {
    systems: Vec<StarSystem>,
    /// Lowercased names, parallel to `systems`, for lookups and suggestions.
    folded_names: Vec<String>,
    by_name: BTreeMap<String, SystemId>,
    by_slug: BTreeMap<String, SystemId>,
    /// For each system, the systems it has a lane to, sorted by id.
    neighbours: Vec<Vec<SystemId>>,
    home: SystemId,
    lane_range_ly: f64,
}

/// A galaxy file that cannot be used. Every message starts with the line of
/// the file where the problem is: `galaxy file line 7: ...`.
#[derive(Debug, thiserror::Error)]
pub enum GalaxyError {
    /// The text is not valid TOML, or does not have the shape of a galaxy
    /// file (unknown key, missing field, wrong type).
    #[error("galaxy file line {line}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// The file has no `[[system]]`.
    #[error("galaxy file line {line}: no systems defined; add at least one [[system]] table")]
    NoSystems {
        /// 1-based line of the (empty) `system` list, or 1 when there is none.
        line: usize,
    },
    /// More than [`MAX_SYSTEMS`] systems.
    #[error("galaxy file line {line}: too many systems: {count} (at most {max})", max = MAX_SYSTEMS)]
    TooManySystems {
        /// 1-based line of the first system over the limit.
        line: usize,
        /// How many systems the file has.
        count: usize,
    },
    /// A system's name is the empty string.
    #[error("galaxy file line {line}: system name is empty")]
    EmptyName {
        /// 1-based line of the name.
        line: usize,
    },
    /// A system's name is longer than [`MAX_NAME_BYTES`].
    #[error(
        "galaxy file line {line}: system name {} is {bytes} bytes long (at most {max})",
        quoted(.name),
        max = MAX_NAME_BYTES
    )]
    NameTooLong {
        /// 1-based line of the name.
        line: usize,
        /// The name.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// A system's name has control characters, or starts or ends with
    /// whitespace (it could never be typed back).
    #[error("galaxy file line {line}: system name {} {problem}", quoted(.name))]
    BadName {
        /// 1-based line of the name.
        line: usize,
        /// The name.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two systems have the same name, ignoring case.
    #[error(
        "galaxy file line {line}: system '{name}' is defined twice (first at line {first_line})"
    )]
    DuplicateName {
        /// 1-based line of the second definition.
        line: usize,
        /// The name.
        name: String,
        /// 1-based line of the first definition.
        first_line: usize,
    },
    /// A system's name has nothing to make a file-safe slug from.
    #[error("galaxy file line {line}: system name '{name}' has no letters or digits to make a file name from")]
    NoSlug {
        /// 1-based line of the name.
        line: usize,
        /// The name.
        name: String,
    },
    /// Two differently named systems would get the same slug.
    #[error(
        "galaxy file line {line}: system '{name}' would have the file name '{slug}', \
         already used by system '{other}' (line {other_line})"
    )]
    DuplicateSlug {
        /// 1-based line of the second system's name.
        line: usize,
        /// The second system's name.
        name: String,
        /// The slug they share.
        slug: String,
        /// The first system's name.
        other: String,
        /// 1-based line of the first system's name.
        other_line: usize,
    },
    /// A position is not three finite numbers within [`MAX_COORDINATE_LY`].
    #[error(
        "galaxy file line {line}: system '{name}' has position_ly {position:?}; \
         each coordinate must be a finite number of light years within ±{max}",
        max = MAX_COORDINATE_LY
    )]
    BadPosition {
        /// 1-based line of the position.
        line: usize,
        /// The system's name.
        name: String,
        /// The position as read.
        position: [f64; 3],
    },
    /// `lane_range_ly` is not a finite number greater than 0.
    #[error("galaxy file line {line}: lane_range_ly must be a finite number greater than 0, not {value}")]
    BadLaneRange {
        /// 1-based line of `lane_range_ly`.
        line: usize,
        /// The value as read.
        value: f64,
    },
    /// `home` names no system of the file.
    #[error(
        "galaxy file line {line}: home {} is not one of the systems{}",
        quoted(.home),
        .suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default()
    )]
    UnknownHome {
        /// 1-based line of `home`.
        line: usize,
        /// The value of `home`.
        home: String,
        /// The closest system name, if one is close.
        suggestion: Option<String>,
    },
}

impl GalaxyError {
    /// The 1-based line of the galaxy file where the problem is.
    pub fn line(&self) -> usize {
        match self {
            GalaxyError::Syntax { line, .. }
            | GalaxyError::NoSystems { line }
            | GalaxyError::TooManySystems { line, .. }
            | GalaxyError::EmptyName { line }
            | GalaxyError::NameTooLong { line, .. }
            | GalaxyError::BadName { line, .. }
            | GalaxyError::DuplicateName { line, .. }
            | GalaxyError::NoSlug { line, .. }
            | GalaxyError::DuplicateSlug { line, .. }
            | GalaxyError::BadPosition { line, .. }
            | GalaxyError::BadLaneRange { line, .. }
            | GalaxyError::UnknownHome { line, .. } => *line,
        }
    }
}

/// A name that matches no system of the galaxy. Its message suggests the
/// closest name when there is one close enough:
/// `no system 'Alpha Centaur'; did you mean 'Alpha Centauri'?`, and otherwise
/// says how to list the systems.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", unknown_system_message(.asked, .suggestion.as_deref()))]
pub struct UnknownSystem {
    /// What was asked for, trimmed and unquoted.
    pub asked: String,
    /// The name of the closest system, if one is close.
    pub suggestion: Option<String>,
}

fn unknown_system_message(asked: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(name) => format!("no system {}; did you mean '{name}'?", quoted(asked)),
        None => format!(
            "no system {}; run `mltrader systems` to list them",
            quoted(asked)
        ),
    }
}

/// `text` in single quotes, with control characters escaped so a message
/// stays on one line.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The shape of a galaxy file, with spans to report lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGalaxy {
    #[serde(default)]
    home: Option<Spanned<String>>,
    #[serde(default)]
    lane_range_ly: Option<Spanned<f64>>,
    #[serde(default)]
    system: Option<Spanned<Vec<RawSystem>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: Spanned<String>,
    position_ly: Spanned<[f64; 3]>,
}

/// The 1-based line of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Galaxy {
    /// The built-in galaxy: real star systems within about 20 light years of
    /// Sol, plus Vega, from `galaxy_stars.toml`. Sol is home.
    pub fn default_galaxy() -> Galaxy {
        static DEFAULT: OnceLock<Galaxy> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Galaxy::from_toml_str(BUILTIN_STARS)
                    .expect("the built-in galaxy_stars.toml is valid (a unit test guards it)")
            })
            .clone()
    }

    /// Builds a galaxy from the text of a galaxy file (format in the module
    /// documentation). Systems get ids in file order.
    pub fn from_toml_str(text: &str) -> Result<Galaxy, GalaxyError> {
        let raw: RawGalaxy = toml::from_str(text).map_err(|e| GalaxyError::Syntax {
            line: e.span().map_or(1, |span| line_at(text, span.start)),
            // One line per message: the parser's extra lines become "; ".
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let line = |start: usize| line_at(text, start);

        let (raw_systems, list_line) = match raw.system {
            Some(list) => {
                let list_line = line(list.span().start);
                (list.into_inner(), list_line)
            }
            None => (Vec::new(), 1),
        };
        if raw_systems.is_empty() {
            return Err(GalaxyError::NoSystems { line: list_line });
        }
        if let Some(first_over) = raw_systems.get(MAX_SYSTEMS) {
            return Err(GalaxyError::TooManySystems {
                line: line(first_over.name.span().start),
                count: raw_systems.len(),
            });
        }

        let mut systems: Vec<StarSystem> = Vec::with_capacity(raw_systems.len());
        let mut folded_names = Vec::with_capacity(raw_systems.len());
        let mut name_lines = Vec::with_capacity(raw_systems.len());
        let mut by_name: BTreeMap<String, SystemId> = BTreeMap::new();
        let mut by_slug: BTreeMap<String, SystemId> = BTreeMap::new();
        for (index, raw_system) in raw_systems.into_iter().enumerate() {
            // At most MAX_SYSTEMS systems, checked above, so the index fits.
            let id = SystemId(index as u16);
            let name_line = line(raw_system.name.span().start);
            let position_line = line(raw_system.position_ly.span().start);
            let name = raw_system.name.into_inner();
            let position_ly = raw_system.position_ly.into_inner();

            check_name(&name, name_line)?;
            let folded = name.to_lowercase();
            if let Some(&first) = by_name.get(&folded) {
                return Err(GalaxyError::DuplicateName {
                    line: name_line,
                    name,
                    first_line: name_lines[SystemId::index(first)],
                });
            }
            let slug = slugify(&name);
            if slug.is_empty() {
                return Err(GalaxyError::NoSlug {
                    line: name_line,
                    name,
                });
            }
            if let Some(&other) = by_slug.get(&slug) {
                return Err(GalaxyError::DuplicateSlug {
                    line: name_line,
                    name,
                    slug,
                    other: systems[other.index()].name.clone(),
                    other_line: name_lines[other.index()],
                });
            }
            if !position_ly
                .iter()
                .all(|c| c.is_finite() && c.abs() <= MAX_COORDINATE_LY)
            {
                return Err(GalaxyError::BadPosition {
                    line: position_line,
                    name,
                    position: position_ly,
                });
            }

            by_name.insert(folded.clone(), id);
            by_slug.insert(slug.clone(), id);
            folded_names.push(folded);
            name_lines.push(name_line);
            systems.push(StarSystem {
                name,
                slug,
                position_ly,
            });
        }

        let lane_range_ly = match raw.lane_range_ly {
            Some(range) => {
                let value = *range.get_ref();
                if !(value.is_finite() && value > 0.0) {
                    return Err(GalaxyError::BadLaneRange {
                        line: line(range.span().start),
                        value,
                    });
                }
                value
            }
            None => DEFAULT_LANE_RANGE_LY,
        };

        let positions: Vec<[f64; 3]> = systems.iter().map(|s| s.position_ly).collect();
        let mut galaxy = Galaxy {
            systems,
            folded_names,
            by_name,
            by_slug,
            neighbours: build_lanes(&positions, lane_range_ly),
            home: SystemId(0),
            lane_range_ly,
        };

        if let Some(home) = raw.home {
            let home_line = line(home.span().start);
            let home = home.into_inner();
            let folded = home.to_lowercase();
            match galaxy.find(&folded) {
                Some(id) => galaxy.home = id,
                None => {
                    let suggestion = galaxy
                        .suggest(&folded)
                        .map(|id| galaxy.name(id).to_string());
                    return Err(GalaxyError::UnknownHome {
                        line: home_line,
                        home,
                        suggestion,
                    });
                }
            }
        }
        Ok(galaxy)
    }

    /// How many systems the galaxy has (at least 1).
    pub fn len(&self) -> usize {
        self.systems.len()
    }

    /// Whether the galaxy has no systems; never true for a built galaxy.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }

    /// All system ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = SystemId> + '_ {
        // A galaxy has at most MAX_SYSTEMS systems, so every index fits.
        (0..self.systems.len()).map(|index| SystemId(index as u16))
    }

    /// The system `id`.
    ///
    /// # Panics
    /// If `id` is not a system of this galaxy.
    pub fn system(&self, id: SystemId) -> &StarSystem {
        self.check(id);
        &self.systems[id.index()]
    }

    /// The display name of system `id`. Panics like [`Galaxy::system`].
    pub fn name(&self, id: SystemId) -> &str {
        &self.system(id).name
    }

    /// The file-safe name of system `id`: lowercase ASCII letters, digits
    /// and '-', unique in the galaxy. Panics like [`Galaxy::system`].
    pub fn slug(&self, id: SystemId) -> &str {
        &self.system(id).slug
    }

    /// The system whose slug is exactly `slug`.
    pub fn by_slug(&self, slug: &str) -> Option<SystemId> {
        self.by_slug.get(slug).copied()
    }

    /// The system a player means by `name`: its name in any case, or its
    /// slug, with surrounding whitespace and one pair of surrounding single
    /// or double quotes ignored.
    pub fn lookup(&self, name: &str) -> Result<SystemId, UnknownSystem> {
        // A name that itself starts and ends with a quote still matches as is.
        let trimmed = name.trim();
        if let Some(id) = self.find(&trimmed.to_lowercase()) {
            return Ok(id);
        }
        let asked = unquote(trimmed);
        let folded = asked.to_lowercase();
        self.find(&folded).ok_or_else(|| UnknownSystem {
            asked: asked.to_string(),
            suggestion: self.suggest(&folded).map(|id| self.name(id).to_string()),
        })
    }

    /// Where new players start.
    pub fn home(&self) -> SystemId {
        self.home
    }

    /// Systems closer than this many light years have a lane.
    pub fn lane_range_ly(&self) -> f64 {
        self.lane_range_ly
    }

    /// The straight-line distance between two systems, in light years.
    /// Panics like [`Galaxy::system`].
    pub fn distance_ly(&self, a: SystemId, b: SystemId) -> f64 {
        distance(self.system(a).position_ly, self.system(b).position_ly)
    }

    /// Whether a ship can jump directly between `a` and `b`. A system has no
    /// lane to itself. Panics like [`Galaxy::system`].
    pub fn has_lane(&self, a: SystemId, b: SystemId) -> bool {
        self.check(b);
        self.neighbours(a).binary_search(&b).is_ok()
    }

    /// The systems with a lane to `a`, sorted by id. Panics like
    /// [`Galaxy::system`].
    pub fn neighbours(&self, a: SystemId) -> &[SystemId] {
        self.check(a);
        &self.neighbours[a.index()]
    }

    /// Every lane once, as `(a, b)` with `a < b`, sorted.
    pub fn lanes(&self) -> Vec<(SystemId, SystemId)> {
        self.ids()
            .flat_map(|a| {
                self.neighbours[a.index()]
                    .iter()
                    .filter(move |&&b| a < b)
                    .map(move |&b| (a, b))
            })
            .collect()
    }

    /// The shortest route from `from` to `to` along lanes, by total distance,
    /// including both ends (`[from]` when they are the same). Among routes of
    /// equal length the one through lower ids wins, so the answer is
    /// deterministic. Every galaxy is connected, so this is `None` only if
    /// that invariant were broken. Panics like [`Galaxy::system`].
    pub fn route(&self, from: SystemId, to: SystemId) -> Option<Vec<SystemId>> {
        self.check(from);
        self.check(to);
        let count = self.len();
        let mut best = vec![f64::INFINITY; count];
        let mut previous: Vec<Option<SystemId>> = vec![None; count];
        let mut settled = vec![false; count];
        let mut queue = BinaryHeap::new();
        best[from.index()] = 0.0;
        queue.push(Reverse(Tentative {
            distance_ly: 0.0,
            id: from,
        }));
        while let Some(Reverse(Tentative { distance_ly, id })) = queue.pop() {
            if settled[id.index()] {
                continue;
            }
            settled[id.index()] = true;
            if id == to {
                break;
            }
            for &next in &self.neighbours[id.index()] {
                if settled[next.index()] {
                    continue;
                }
                let candidate = distance_ly + self.distance_ly(id, next);
                let better = match candidate.total_cmp(&best[next.index()]) {
                    Ordering::Less => true,
                    Ordering::Equal => previous[next.index()].is_some_and(|p| id < p),
                    Ordering::Greater => false,
                };
                if better {
                    best[next.index()] = candidate;
                    previous[next.index()] = Some(id);
                    queue.push(Reverse(Tentative {
                        distance_ly: candidate,
                        id: next,
                    }));
                }
            }
        }
        if !settled[to.index()] {
            return None;
        }
        let mut path = vec![to];
        let mut at = to;
        while let Some(before) = previous[at.index()] {
            path.push(before);
            at = before;
        }
        path.reverse();
        Some(path)
    }

    /// Ticks to travel from `a` to `b` at `ticks_per_ly`:
    /// `ceil(distance_ly * ticks_per_ly)` (ignoring float noise below 1e-9),
    /// at least 1. Panics like [`Galaxy::system`].
    pub fn travel_ticks(&self, a: SystemId, b: SystemId, ticks_per_ly: u32) -> u64 {
        let ticks = ceil_ignoring_noise(self.distance_ly(a, b) * f64::from(ticks_per_ly));
        // Distances are bounded (MAX_COORDINATE_LY), so this fits a u64.
        (ticks as u64).max(1)
    }

    /// Fuel units for a jump from `a` to `b`: `ceil(distance_ly)` (ignoring
    /// float noise below 1e-9), at least 1. Panics like [`Galaxy::system`].
    pub fn fuel_cost(&self, a: SystemId, b: SystemId) -> u32 {
        let fuel = ceil_ignoring_noise(self.distance_ly(a, b));
        // Distances are bounded (MAX_COORDINATE_LY), so this fits a u32.
        (fuel as u32).max(1)
    }

    /// Asserts that `id` is a system of this galaxy.
    fn check(&self, id: SystemId) {
        assert!(
            id.index() < self.systems.len(),
            "system id {} is not in this galaxy of {} systems",
            id.0,
            self.systems.len()
        );
    }

    /// The system whose lowercased name or slug is `folded`.
    fn find(&self, folded: &str) -> Option<SystemId> {
        self.by_name
            .get(folded)
            .or_else(|| self.by_slug.get(folded))
            .copied()
    }

    /// The system whose name (or slug) is closest to `folded` by edit
    /// distance, if it is within a third of the length of `folded` (at least
    /// 1 edit). Ties go to the lowest id.
    fn suggest(&self, folded: &str) -> Option<SystemId> {
        let asked: Vec<char> = folded.chars().collect();
        let limit = (asked.len() / 3).max(1);
        let mut best: Option<(usize, SystemId)> = None;
        let mut scratch = Vec::new();
        for id in self.ids() {
            let candidates = [
                self.folded_names[id.index()].as_str(),
                self.systems[id.index()].slug.as_str(),
            ];
            for candidate in candidates {
                let bound = best.map_or(limit, |(d, _)| d.saturating_sub(1).min(limit));
                if let Some(d) = edit_distance_within(&asked, candidate, bound, &mut scratch) {
                    if best.is_none_or(|(best_d, _)| d < best_d) {
                        best = Some((d, id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }
}

/// A system reached by Dijkstra's search, ordered by distance then id.
#[derive(Clone, Copy, Debug)]
struct Tentative {
    distance_ly: f64,
    id: SystemId,
}

impl PartialEq for Tentative {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Tentative {}

impl PartialOrd for Tentative {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tentative {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance_ly
            .total_cmp(&other.distance_ly)
            .then(self.id.cmp(&other.id))
    }
}

/// Rounds up, treating values within 1e-9 above an integer as that integer
/// (so a distance of exactly 5 ly computed as 5.000000000000001 costs 5).
fn ceil_ignoring_noise(value: f64) -> f64 {
    (value - 1e-9).ceil().max(0.0)
}

/// `trimmed` without one pair of surrounding quotes, trimmed again.
fn unquote(trimmed: &str) -> &str {
    for quote in ['"', '\''] {
        if trimmed.len() >= 2 && trimmed.starts_with(quote) && trimmed.ends_with(quote) {
            // Quotes are one byte, so these are char boundaries.
            return trimmed[1..trimmed.len() - 1].trim();
        }
    }
    trimmed
}

/// Checks a system name: non-empty, at most MAX_NAME_BYTES, no control
/// characters, no surrounding whitespace.
fn check_name(name: &str, line: usize) -> Result<(), GalaxyError> {
    if name.is_empty() {
        return Err(GalaxyError::EmptyName { line });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(GalaxyError::NameTooLong {
            line,
            name: name.to_string(),
            bytes: name.len(),
        });
    }
    let problem = if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.trim() != name {
        Some("starts or ends with whitespace")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(GalaxyError::BadName {
            line,
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The file-safe form of a name: lowercase ASCII letters and digits, words
/// joined by '-'. Accented Latin letters lose their accents; any other
/// non-ASCII character (other than whitespace) becomes a word `u<hex code
/// point>`, so names in any script still get distinct slugs. ASCII
/// punctuation and whitespace separate words.
fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            push_slug_piece(&mut slug, &mut gap, c.encode_utf8(&mut [0; 4]));
        } else if c.is_ascii() || c.is_whitespace() {
            gap = true;
        } else if let Some(plain) = unaccented(c) {
            push_slug_piece(&mut slug, &mut gap, plain);
        } else {
            gap = true;
            push_slug_piece(&mut slug, &mut gap, &format!("u{:x}", u32::from(c)));
            gap = true;
        }
    }
    slug
}

fn push_slug_piece(slug: &mut String, gap: &mut bool, piece: &str) {
    if *gap && !slug.is_empty() {
        slug.push('-');
    }
    *gap = false;
    slug.push_str(piece);
}

/// ASCII spelling of common accented lowercase Latin letters.
fn unaccented(c: char) -> Option<&'static str> {
    Some(match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ì'..='ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'þ' => "th",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Levenshtein distance (in chars) between `a` and `b`, if it is at most
/// `bound`.
fn edit_distance_within(a: &[char], b: &str, bound: usize, row: &mut Vec<usize>) -> Option<usize> {
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    row.clear();
    row.extend(0..=b.len());
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        let mut row_min = row[0];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
            row_min = row_min.min(row[j + 1]);
        }
        if row_min > bound {
            return None;
        }
    }
    let distance = row[b.len()];
    (distance <= bound).then_some(distance)
}

/// Euclidean distance between two positions.
fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    (dx * dx + dy * dy + dz * dz).sqrt()
}

/// Union-find over system indices.
struct Components {
    parent: Vec<usize>,
}

impl Components {
    fn new(count: usize) -> Self {
        Components {
            parent: (0..count).collect(),
        }
    }

    fn root(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    /// Joins the components of `a` and `b`; false if they were already one.
    fn join(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return false;
        }
        self.parent[ra.max(rb)] = ra.min(rb);
        true
    }
}

/// The lanes of a galaxy: each system's neighbours, sorted by id.
fn build_lanes(positions: &[[f64; 3]], range_ly: f64) -> Vec<Vec<SystemId>> {
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
type LinkKey = (f64, usize, usize);

fn link_key(positions: &[[f64; 3]], a: usize, b: usize) -> LinkKey {
    (distance(positions[a], positions[b]), a.min(b), a.max(b))
}

/// Whether link `x` comes before link `y` in `link_key` order.
fn link_before(x: LinkKey, y: LinkKey) -> bool {
    x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))) == Ordering::Less
}

/// Adds the nodes `added` (one whole component) to the growing tree of
/// `joining_links`, updating every outside node's closest link to the tree.
fn absorb_component(
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
fn joining_links(positions: &[[f64; 3]], components: &mut Components) -> Vec<(usize, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn galaxy_toml(systems: &[(&str, [f64; 3])], extra: &str) -> String {
        let mut text = String::from(extra);
        for (name, p) in systems {
            text.push_str(&format!(
                "\n[[system]]\nname = {}\nposition_ly = [{:?}, {:?}, {:?}]\n",
                toml::Value::String(name.to_string()),
                p[0],
                p[1],
                p[2]
            ));
        }
        text
    }

    fn id(galaxy: &Galaxy, name: &str) -> SystemId {
        galaxy
            .lookup(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn connected(galaxy: &Galaxy) -> bool {
        let mut seen = vec![false; galaxy.len()];
        let mut stack = vec![SystemId(0)];
        seen[0] = true;
        while let Some(at) = stack.pop() {
            for &next in galaxy.neighbours(at) {
                if !seen[next.index()] {
                    seen[next.index()] = true;
                    stack.push(next);
                }
            }
        }
        seen.iter().all(|&s| s)
    }

    fn route_length(galaxy: &Galaxy, route: &[SystemId]) -> f64 {
        route
            .windows(2)
            .map(|w| {
                assert!(galaxy.has_lane(w[0], w[1]), "route uses a missing lane");
                galaxy.distance_ly(w[0], w[1])
            })
            .sum()
    }

    /// Lanes by the literal description: pairs in range, then Kruskal over
    /// all pairs sorted by (distance, a, b).
    fn reference_lanes(positions: &[[f64; 3]], range: f64) -> Vec<(SystemId, SystemId)> {
        let n = positions.len();
        let mut components = Components::new(n);
        let mut lanes = Vec::new();
        let mut all = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let d = distance(positions[a], positions[b]);
                if d < range {
                    lanes.push((a, b));
                    components.join(a, b);
                }
                all.push((d, a, b));
            }
        }
        all.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
        for (_, a, b) in all {
            if components.join(a, b) {
                lanes.push((a, b));
            }
        }
        let mut lanes: Vec<_> = lanes
            .into_iter()
            .map(|(a, b)| (SystemId(a as u16), SystemId(b as u16)))
            .collect();
        lanes.sort();
        lanes
    }

    /// Shortest distances between all pairs along lanes (Floyd–Warshall).
    fn all_shortest(galaxy: &Galaxy) -> Vec<Vec<f64>> {
        let n = galaxy.len();
        let mut d = vec![vec![f64::INFINITY; n]; n];
        for (i, row) in d.iter_mut().enumerate() {
            row[i] = 0.0;
        }
        for (a, b) in galaxy.lanes() {
            let w = galaxy.distance_ly(a, b);
            d[a.index()][b.index()] = w;
            d[b.index()][a.index()] = w;
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    let via = d[i][k] + d[k][j];
                    if via < d[i][j] {
                        d[i][j] = via;
                    }
                }
            }
        }
        d
    }

    #[test]
    fn default_galaxy_loads() {
        let galaxy = Galaxy::from_toml_str(BUILTIN_STARS).expect("built-in galaxy parses");
        assert!(galaxy.len() >= 30, "only {} systems", galaxy.len());
        assert!(!galaxy.is_empty());
        assert_eq!(galaxy.name(galaxy.home()), "Sol");
        assert_eq!(galaxy.system(galaxy.home()).position_ly, [0.0; 3]);
        for name in [
            "Sol",
            "Alpha Centauri",
            "Barnard's Star",
            "Wolf 359",
            "Lalande 21185",
            "Sirius",
            "Luyten 726-8",
            "Ross 154",
            "Ross 248",
            "Epsilon Eridani",
            "Lacaille 9352",
            "Ross 128",
            "EZ Aquarii",
            "Procyon",
            "61 Cygni",
            "Struve 2398",
            "Groombridge 34",
            "Epsilon Indi",
            "DX Cancri",
            "Tau Ceti",
            "GJ 1061",
            "YZ Ceti",
            "Luyten's Star",
            "Teegarden's Star",
            "Kapteyn's Star",
            "Lacaille 8760",
            "Kruger 60",
            "Wolf 1061",
            "Van Maanen's Star",
            "Altair",
            "70 Ophiuchi",
            "Sigma Draconis",
            "Eta Cassiopeiae",
            "82 Eridani",
            "Delta Pavonis",
            "Vega",
        ] {
            let found = id(&galaxy, name);
            assert_eq!(galaxy.name(found), name);
            let from_sol = galaxy.distance_ly(galaxy.home(), found);
            let limit = if name == "Vega" { 25.1 } else { 20.0 };
            assert!(from_sol <= limit, "{name} is {from_sol} ly from Sol");
        }
        let vega = galaxy.distance_ly(galaxy.home(), id(&galaxy, "Vega"));
        assert!((vega - 25.04).abs() < 0.02, "Vega at {vega} ly");
        let alpha = galaxy.distance_ly(galaxy.home(), id(&galaxy, "Alpha Centauri"));
        assert!((alpha - 4.37).abs() < 0.02, "Alpha Centauri at {alpha} ly");
        // The cached copy is the same galaxy.
        let cached = Galaxy::default_galaxy();
        assert_eq!(cached.len(), galaxy.len());
        assert_eq!(cached.lanes(), galaxy.lanes());
    }

    #[test]
    fn default_galaxy_is_connected() {
        let galaxy = Galaxy::default_galaxy();
        assert!(connected(&galaxy));
        for a in galaxy.ids() {
            for b in galaxy.ids() {
                let route = galaxy
                    .route(a, b)
                    .unwrap_or_else(|| panic!("no route {} -> {}", galaxy.name(a), galaxy.name(b)));
                assert_eq!(route.first(), Some(&a));
                assert_eq!(route.last(), Some(&b));
            }
        }
    }

    #[test]
    fn sol_neighbours() {
        let galaxy = Galaxy::default_galaxy();
        let sol = galaxy.home();
        let names: Vec<&str> = galaxy
            .neighbours(sol)
            .iter()
            .map(|&n| galaxy.name(n))
            .collect();
        assert!(names.contains(&"Alpha Centauri"), "{names:?}");
        assert!(names.contains(&"Barnard's Star"), "{names:?}");
        assert!(galaxy.has_lane(sol, id(&galaxy, "Alpha Centauri")));
        assert!(galaxy.has_lane(id(&galaxy, "Alpha Centauri"), sol));
        assert!(!galaxy.has_lane(sol, sol));
        assert!(!galaxy.has_lane(sol, id(&galaxy, "Vega")));
    }

    #[test]
    fn lanes_are_listed_once_and_match_neighbours() {
        let galaxy = Galaxy::default_galaxy();
        let lanes = galaxy.lanes();
        assert!(lanes.windows(2).all(|w| w[0] < w[1]));
        assert!(lanes.iter().all(|&(a, b)| a < b && galaxy.has_lane(a, b)));
        let from_neighbours: usize = galaxy.ids().map(|a| galaxy.neighbours(a).len()).sum();
        assert_eq!(from_neighbours, 2 * lanes.len());
        for a in galaxy.ids() {
            assert!(galaxy.neighbours(a).windows(2).all(|w| w[0] < w[1]));
        }
        let positions: Vec<_> = galaxy.ids().map(|a| galaxy.system(a).position_ly).collect();
        assert_eq!(lanes, reference_lanes(&positions, galaxy.lane_range_ly()));
    }

    #[test]
    fn lookup_forgives_case_quotes_and_slugs() {
        let galaxy = Galaxy::default_galaxy();
        let alpha = id(&galaxy, "Alpha Centauri");
        let barnard = id(&galaxy, "Barnard's Star");
        for asked in [
            "alpha centauri",
            "ALPHA CENTAURI",
            "  Alpha Centauri\t",
            "\"Alpha Centauri\"",
            "'alpha centauri'",
            " ' Alpha Centauri ' ",
            "alpha-centauri",
            "Alpha-Centauri",
        ] {
            assert_eq!(galaxy.lookup(asked).ok(), Some(alpha), "{asked:?}");
        }
        for asked in [
            "barnard's star",
            "'Barnard's Star'",
            "\"barnard's star\"",
            "barnard-s-star",
        ] {
            assert_eq!(galaxy.lookup(asked).ok(), Some(barnard), "{asked:?}");
        }
        assert_eq!(galaxy.by_slug("barnard-s-star"), Some(barnard));
        assert_eq!(galaxy.by_slug("Barnard-s-star"), None);
    }

    #[test]
    fn lookup_suggests_close_names() {
        let galaxy = Galaxy::default_galaxy();
        let error = galaxy.lookup("Alpha Centaur").unwrap_err();
        assert_eq!(error.suggestion.as_deref(), Some("Alpha Centauri"));
        assert_eq!(
            error.to_string(),
            "no system 'Alpha Centaur'; did you mean 'Alpha Centauri'?"
        );
        let error = galaxy.lookup(" \"barnards star\" ").unwrap_err();
        assert_eq!(error.asked, "barnards star");
        assert_eq!(error.suggestion.as_deref(), Some("Barnard's Star"));
        let error = galaxy.lookup("Xyz").unwrap_err();
        assert_eq!(error.suggestion, None);
        assert_eq!(
            error.to_string(),
            "no system 'Xyz'; run `mltrader systems` to list them"
        );
        assert!(galaxy.lookup("").is_err());
        assert!(galaxy.lookup("\"").is_err());
        assert!(galaxy.lookup("''").is_err());
        let error = galaxy.lookup("Sol\nSirius").unwrap_err();
        assert!(!error.to_string().contains('\n'));
    }

    #[test]
    fn slugs_are_unique_and_file_safe() {
        let galaxy = Galaxy::default_galaxy();
        let mut seen = std::collections::BTreeSet::new();
        for a in galaxy.ids() {
            let slug = galaxy.slug(a);
            assert!(!slug.is_empty());
            assert!(
                slug.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{slug}"
            );
            assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
            assert!(seen.insert(slug.to_string()), "duplicate slug {slug}");
            assert_eq!(galaxy.by_slug(slug), Some(a));
        }
        assert_eq!(galaxy.slug(id(&galaxy, "Alpha Centauri")), "alpha-centauri");
        assert_eq!(galaxy.slug(id(&galaxy, "Barnard's Star")), "barnard-s-star");
        assert_eq!(galaxy.slug(id(&galaxy, "Luyten 726-8")), "luyten-726-8");
    }

    #[test]
    fn slugs_of_any_script() {
        assert_eq!(slugify("Épsilon  Ériðani"), "epsilon-eridani");
        assert_eq!(slugify("天狼星"), "u5929-u72fc-u661f");
        assert_eq!(slugify("Ross 128 b"), "ross-128-b");
        assert_eq!(slugify("'--'"), "");
        let text = galaxy_toml(&[("天狼星", [0.0; 3]), ("Éa", [1.0, 0.0, 0.0])], "");
        let galaxy = Galaxy::from_toml_str(&text).unwrap();
        assert_eq!(galaxy.lookup("ÉA").ok(), Some(SystemId(1)));
        assert_eq!(galaxy.lookup("u5929-u72fc-u661f").ok(), Some(SystemId(0)));
    }

    /// Builds `text` and expects an error on `line` whose message contains
    /// `needle`.
    fn expect_error(text: &str, line: usize, needle: &str) -> GalaxyError {
        let error = match Galaxy::from_toml_str(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert_eq!(error.line(), line, "{message}\n{text}");
        assert!(
            message.starts_with(&format!("galaxy file line {line}: ")),
            "{message}"
        );
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert!(!message.contains('\n'), "{message:?}");
        error
    }

    #[test]
    fn bad_files_name_the_line() {
        // TOML syntax error: unterminated string on line 3.
        let error = expect_error(
            "home = \"Sol\"\n[[system]]\nname = \"Sol\nposition_ly = [0.0, 0.0, 0.0]\n",
            3,
            "",
        );
        assert!(matches!(error, GalaxyError::Syntax { .. }));
        expect_error(
            "home = \"Sol\"\nx = [1,\n2,,]\n",
            3,
            "invalid array; expected `]`",
        );

        // Duplicate name (ignoring case) on line 7.
        let text = "[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0, 0.0]\n\n\
                    [[system]]\nposition_ly = [1.0, 0.0, 0.0]\nname = \"sol\"\n";
        expect_error(text, 7, "system 'sol' is defined twice (first at line 2)");

        // Unknown home, with a suggestion.
        let text = galaxy_toml(&[("Sol", [0.0; 3])], "\nhome = \"Sool\"\n");
        let error = expect_error(
            &text,
            2,
            "home 'Sool' is not one of the systems; did you mean 'Sol'?",
        );
        assert!(matches!(error, GalaxyError::UnknownHome { .. }));

        // No systems at all, or an empty list.
        expect_error("", 1, "no systems");
        expect_error("# nothing\nhome = \"Sol\"\n", 1, "no systems");
        expect_error("home = \"Sol\"\nsystem = []\n", 2, "no systems");

        // Positions that are not finite, or absurdly far.
        for bad in ["nan", "inf", "-inf", "1e300"] {
            let text = format!(
                "[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0, 0.0]\n\
                 [[system]]\nname = \"Nowhere\"\nposition_ly = [0.0, {bad}, 0.0]\n"
            );
            expect_error(&text, 6, "system 'Nowhere' has position_ly");
        }

        // Bad lane ranges.
        for bad in ["0.0", "-1.0", "0", "inf", "nan"] {
            let text = galaxy_toml(
                &[("Sol", [0.0; 3])],
                &format!("\n\nlane_range_ly = {bad}\n"),
            );
            expect_error(
                &text,
                3,
                "lane_range_ly must be a finite number greater than 0",
            );
        }
        let text = galaxy_toml(&[("Sol", [0.0; 3])], "lane_range_ly = \"far\"\n");
        expect_error(&text, 1, "");

        // Names: empty, too long, control characters, surrounding spaces.
        let text = galaxy_toml(&[("Sol", [0.0; 3]), ("", [1.0, 0.0, 0.0])], "");
        expect_error(&text, 7, "system name is empty");
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let text = galaxy_toml(&[("Sol", [0.0; 3]), (&long, [1.0, 0.0, 0.0])], "");
        expect_error(&text, 7, "65 bytes long (at most 64)");
        let text = galaxy_toml(&[("Sol\nSirius", [0.0; 3])], "");
        expect_error(&text, 3, "control character");
        let text = galaxy_toml(&[(" Sol", [0.0; 3])], "");
        expect_error(&text, 3, "whitespace");
        let text = galaxy_toml(&[("'--'", [0.0; 3])], "");
        expect_error(&text, 3, "no letters or digits");

        // Two names, one slug.
        let text = galaxy_toml(
            &[
                ("Alpha Centauri", [0.0; 3]),
                ("Alpha-Centauri", [1.0, 0.0, 0.0]),
            ],
            "",
        );
        expect_error(
            &text,
            7,
            "system 'Alpha-Centauri' would have the file name 'alpha-centauri', \
             already used by system 'Alpha Centauri' (line 3)",
        );

        // Shape problems: unknown keys, missing or malformed fields.
        let text =
            "lane_rang_ly = 7.0\n[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0, 0.0]\n";
        expect_error(text, 1, "lane_rang_ly");
        let text = "[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0, 0.0]\n[[system]]\nname = \"Vega\"\nposition = [1.0, 0.0, 0.0]\n";
        expect_error(text, 6, "position");
        let text = "[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0]\n";
        expect_error(text, 3, "expected an array of length 3");
        let text = "[[system]]\nname = \"Sol\"\nposition_ly = [0.0, 0.0, 0.0]\n\n[[system]]\nname = \"Vega\"\n";
        expect_error(text, 5, "missing field `position_ly`");
    }

    #[test]
    fn home_defaults_to_first_and_accepts_slugs() {
        let systems = [("Sol", [0.0; 3]), ("Barnard's Star", [0.0, 5.96, 0.0])];
        let galaxy = Galaxy::from_toml_str(&galaxy_toml(&systems, "")).unwrap();
        assert_eq!(galaxy.home(), SystemId(0));
        assert_eq!(galaxy.lane_range_ly(), DEFAULT_LANE_RANGE_LY);
        let galaxy =
            Galaxy::from_toml_str(&galaxy_toml(&systems, "home = \"barnard-s-star\"\n")).unwrap();
        assert_eq!(galaxy.home(), SystemId(1));
    }

    #[test]
    fn ticks_and_fuel() {
        let text = galaxy_toml(
            &[
                ("A", [0.0; 3]),
                ("B", [3.0, 4.0, 0.0]),
                ("C", [3.0, 4.1, 0.0]),
            ],
            "",
        );
        let galaxy = Galaxy::from_toml_str(&text).unwrap();
        let (a, b, c) = (SystemId(0), SystemId(1), SystemId(2));
        assert_eq!(galaxy.distance_ly(a, b), 5.0);
        assert_eq!(galaxy.fuel_cost(a, b), 5);
        assert_eq!(galaxy.fuel_cost(a, c), 6);
        assert_eq!(galaxy.fuel_cost(b, c), 1);
        assert_eq!(galaxy.fuel_cost(a, a), 1);
        assert_eq!(galaxy.travel_ticks(a, b, 10), 50);
        assert_eq!(galaxy.travel_ticks(b, c, 10), 1);
        assert_eq!(galaxy.travel_ticks(b, c, 100), 10);
        assert_eq!(galaxy.travel_ticks(a, a, 10), 1);
        assert_eq!(galaxy.travel_ticks(a, b, 0), 1);
        let far = galaxy_toml(&[("A", [-1e6; 3]), ("B", [1e6; 3])], "");
        let far = Galaxy::from_toml_str(&far).unwrap();
        assert!(far.travel_ticks(a, b, u32::MAX) > 1);
        assert_eq!(far.fuel_cost(a, b), 3_464_102);
    }

    #[test]
    fn separate_clusters_are_joined_by_their_closest_pair() {
        let text = galaxy_toml(
            &[
                ("A", [0.0, 0.0, 0.0]),
                ("B", [1.0, 0.0, 0.0]),
                ("C", [50.0, 0.0, 0.0]),
                ("D", [49.0, 0.0, 0.0]),
                ("E", [1.0, 30.0, 0.0]),
            ],
            "lane_range_ly = 2.0\n",
        );
        let galaxy = Galaxy::from_toml_str(&text).unwrap();
        let s = SystemId;
        assert_eq!(
            galaxy.lanes(),
            vec![(s(0), s(1)), (s(1), s(3)), (s(1), s(4)), (s(2), s(3))]
        );
        assert_eq!(galaxy.route(s(0), s(2)), Some(vec![s(0), s(1), s(3), s(2)]));
        assert_eq!(galaxy.route(s(4), s(4)), Some(vec![s(4)]));
    }

    #[test]
    fn route_is_shortest_by_brute_force() {
        // A small, irregular galaxy with many alternative routes.
        let systems: Vec<(String, [f64; 3])> = (0..8)
            .map(|i| {
                let i_f = f64::from(i);
                let p = [
                    (i_f * 2.3).sin() * 5.0,
                    (i_f * 1.7).cos() * 5.0,
                    ((i * 37) % 11) as f64 * 0.4,
                ];
                (format!("S{i}"), p)
            })
            .collect();
        let refs: Vec<(&str, [f64; 3])> = systems.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        for range in ["3.0", "5.0", "7.0", "9.0"] {
            let text = galaxy_toml(&refs, &format!("lane_range_ly = {range}\n"));
            let galaxy = Galaxy::from_toml_str(&text).unwrap();

            // Brute force: the shortest of all simple paths.
            fn walk(
                galaxy: &Galaxy,
                at: SystemId,
                to: SystemId,
                length: f64,
                seen: &mut Vec<bool>,
                best: &mut f64,
            ) {
                if at == to {
                    *best = best.min(length);
                    return;
                }
                for &next in galaxy.neighbours(at) {
                    if !seen[next.index()] {
                        seen[next.index()] = true;
                        let step = galaxy.distance_ly(at, next);
                        walk(galaxy, next, to, length + step, seen, best);
                        seen[next.index()] = false;
                    }
                }
            }
            for a in galaxy.ids() {
                for b in galaxy.ids() {
                    let mut seen = vec![false; galaxy.len()];
                    seen[a.index()] = true;
                    let mut best = f64::INFINITY;
                    walk(&galaxy, a, b, 0.0, &mut seen, &mut best);
                    let route = galaxy.route(a, b).unwrap();
                    assert_eq!((route[0], route[route.len() - 1]), (a, b));
                    let length = route_length(&galaxy, &route);
                    assert!(
                        (length - best).abs() < 1e-9,
                        "{a:?}->{b:?}: {length} vs {best}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "is not in this galaxy")]
    fn foreign_ids_panic() {
        let galaxy = Galaxy::default_galaxy();
        let _ = galaxy.system(SystemId(u16::MAX));
    }

    #[test]
    fn star_system_serializes() {
        let galaxy = Galaxy::default_galaxy();
        let sol = toml::to_string(galaxy.system(galaxy.home())).unwrap();
        assert!(sol.contains("slug = \"sol\""), "{sol}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_galaxies_are_connected(
            positions in prop::collection::vec(
                prop::array::uniform3(-40.0f64..40.0), 1..24),
            range in 0.1f64..12.0,
        ) {
            let names: Vec<String> = (0..positions.len()).map(|i| format!("Star {i}")).collect();
            let systems: Vec<(&str, [f64; 3])> =
                names.iter().map(String::as_str).zip(positions.iter().copied()).collect();
            let text = galaxy_toml(&systems, &format!("lane_range_ly = {range:?}\n"));
            let galaxy = Galaxy::from_toml_str(&text).unwrap();
            prop_assert_eq!(galaxy.len(), positions.len());
            prop_assert!(connected(&galaxy));
            prop_assert_eq!(galaxy.lanes(), reference_lanes(&positions, range));
            let shortest = all_shortest(&galaxy);
            for a in galaxy.ids() {
                for b in galaxy.ids() {
                    let route = galaxy.route(a, b);
                    prop_assert!(route.is_some());
                    let route = route.unwrap_or_default();
                    let length = route_length(&galaxy, &route);
                    prop_assert!((length - shortest[a.index()][b.index()]).abs() < 1e-9);
                }
            }
        }

        #[test]
        fn lookup_never_panics(asked in any::<String>(), other in "[ '\"]{0,2}[A-Za-z0-9' -]{0,20}[ '\"]{0,2}") {
            let galaxy = Galaxy::default_galaxy();
            for text in [asked.as_str(), other.as_str()] {
                match galaxy.lookup(text) {
                    Ok(found) => prop_assert!(found.index() < galaxy.len()),
                    Err(error) => {
                        prop_assert!(error.to_string().starts_with("no system '"));
                        if let Some(name) = &error.suggestion {
                            prop_assert!(galaxy.lookup(name).is_ok());
                        }
                    }
                }
            }
        }

        #[test]
        fn any_names_give_safe_unique_slugs(
            names in prop::collection::btree_set("[^\\p{Cc}]{1,12}", 1..8),
        ) {
            let names: Vec<String> = names.into_iter().map(|n| n.trim().to_string()).collect();
            let systems: Vec<(&str, [f64; 3])> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), [i as f64, 0.0, 0.0]))
                .collect();
            let text = galaxy_toml(&systems, "");
            // Some name sets are rightly refused (empty, duplicate, no slug);
            // those that are accepted must have safe, unique, findable slugs.
            if let Ok(galaxy) = Galaxy::from_toml_str(&text) {
                for a in galaxy.ids() {
                    let slug = galaxy.slug(a);
                    prop_assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                    prop_assert_eq!(galaxy.by_slug(slug), Some(a));
                    prop_assert_eq!(galaxy.lookup(galaxy.name(a)).ok(), Some(a));
                }
            }
        }
    }
}
