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
//! region = "eu"                      # optional: the home region (issue 20)
//!
//! [[system]]
//! name = "Alpha Centauri"
//! position_ly = [-1.63, -1.37, -3.82]
//! region = "us"
//! ```
//!
//! Systems get ids in file order, starting at 0. `home` may name a system
//! by its name (any case) or its slug. Every problem found in a file is
//! reported as a [`GalaxyError`] naming the line of the file where it is.
//!
//! A system's `region` is the region of the mesh whose nodes serve it when the galaxy runs
//! over several regions (docs/REGIONS.md): a short slug (1 to 16 bytes of lowercase ASCII
//! letters, digits and `-`). Either every system names one or none does; a galaxy without
//! regions runs in one.
//!
//! # Lanes
//!
//! Every pair of systems closer than `lane_range_ly` gets a lane. If the
//! systems are not then all connected, the shortest possible links between
//! the separate groups are added (Kruskal-style over all pairs, ordered by
//! distance then by ids, so the result is deterministic) until they are:
//! every galaxy is connected.
//!
//! The built-in galaxy ([`Galaxy::default_galaxy`]) is `stars.toml`
//! beside this file: real stars near Sol, at their real positions.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use toml::Spanned;

mod lanes;
mod names;

use lanes::*;
use names::*;

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
pub const BUILTIN_STARS: &str = include_str!("stars.toml");

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
    /// The home region, if the galaxy file names regions (every system then has one).
    pub region: Option<String>,
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
    /// A system's `region` is not a region slug.
    #[error(
        "galaxy file line {line}: system '{name}' has region {}: a region is 1 to {MAX_REGION_BYTES} bytes of lowercase ASCII letters, digits and '-' (e.g. \"eu\")",
        quoted(.region)
    )]
    BadRegion {
        /// 1-based line of the region.
        line: usize,
        /// The system's name.
        name: String,
        /// The region as read.
        region: String,
    },
    /// Some systems name a region and others do not.
    #[error(
        "galaxy file line {line}: system '{name}' {} a region but the first system, '{first}', {}: either every system names its region or none does",
        if *.first_has { "does not name" } else { "names" },
        if *.first_has { "does" } else { "does not" }
    )]
    SomeRegions {
        /// 1-based line of the system's name.
        line: usize,
        /// The system's name.
        name: String,
        /// The first system's name.
        first: String,
        /// Whether the first system names a region.
        first_has: bool,
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
            | GalaxyError::BadRegion { line, .. }
            | GalaxyError::SomeRegions { line, .. }
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
    #[serde(default)]
    region: Option<Spanned<String>>,
}

/// The longest region slug, in bytes.
pub const MAX_REGION_BYTES: usize = 16;

/// Checks a region slug: 1 to [`MAX_REGION_BYTES`] bytes of lowercase ASCII letters, digits and
/// `-` (it names a JetStream domain and subject tokens, which take no other bytes).
fn check_region(region: &str, system: &str, line: usize) -> Result<(), GalaxyError> {
    let ok = !region.is_empty()
        && region.len() <= MAX_REGION_BYTES
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(GalaxyError::BadRegion {
            line,
            name: system.to_string(),
            region: region.to_string(),
        })
    }
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
    /// Sol, plus Vega, from `stars.toml`. Sol is home.
    pub fn default_galaxy() -> Galaxy {
        static DEFAULT: OnceLock<Galaxy> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Galaxy::from_toml_str(BUILTIN_STARS)
                    .expect("the built-in stars.toml is valid (a unit test guards it)")
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
            let region = match raw_system.region {
                Some(region) => {
                    let region_line = line(region.span().start);
                    let region = region.into_inner();
                    check_region(&region, &name, region_line)?;
                    Some(region)
                }
                None => None,
            };
            if let Some(first) = systems.first() {
                if first.region.is_some() != region.is_some() {
                    return Err(GalaxyError::SomeRegions {
                        line: name_line,
                        name,
                        first: first.name.clone(),
                        first_has: first.region.is_some(),
                    });
                }
            }

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
                region,
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

    /// The home region of system `id`, if the galaxy names regions.
    pub fn region_of(&self, id: SystemId) -> Option<&str> {
        self.system(id).region.as_deref()
    }

    /// The regions the galaxy names, sorted, each once (empty for a galaxy without regions).
    pub fn regions(&self) -> Vec<&str> {
        let mut regions: Vec<&str> = self
            .systems
            .iter()
            .filter_map(|s| s.region.as_deref())
            .collect();
        regions.sort_unstable();
        regions.dedup();
        regions
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
    /// at least 1; 0 only when `ticks_per_ly` is 0 (instant travel: the jump lands as soon as
    /// the destination hears of it, as benchmarks of the protocol alone want). Panics like
    /// [`Galaxy::system`].
    pub fn travel_ticks(&self, a: SystemId, b: SystemId, ticks_per_ly: u32) -> u64 {
        if ticks_per_ly == 0 {
            return 0;
        }
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

#[cfg(test)]
mod tests;
