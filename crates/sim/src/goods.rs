//! The tradable goods and a ship's cargo hold.
//!
//! Owns the list of goods ([`Good`]) with their stable names, base prices and the hold space
//! they take, and [`Cargo`]: how many units of each good a ship carries, with its compact text
//! form for log records (`food:3,ore:10`, `-` when empty).
//!
//! Pure data and arithmetic: never does I/O, never panics on what a player or a log line says
//! (parsing returns errors that name the problem).

use std::fmt;
use std::str::FromStr;

/// How many goods there are; the length of every per-good array.
pub const GOOD_COUNT: usize = 8;

/// The longest text form of a cargo accepted by [`Cargo::from_str`], in bytes (every good at
/// `u32::MAX` fits in about 190).
pub const MAX_CARGO_TEXT_BYTES: usize = 256;

/// Hold space of a basic (starter or respawned) ship, in hold units (see
/// [`Good::hold_units_per_unit`]).
pub const BASIC_SHIP_HOLD_UNITS: u32 = 60;

/// A tradable good. The order is fixed: it indexes every per-good array and orders the text
/// form of a cargo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Good {
    Food,
    Water,
    Ore,
    Fuel,
    Metals,
    Electronics,
    Medicine,
    Luxuries,
}

impl Good {
    /// Every good, in index order.
    pub const ALL: [Good; GOOD_COUNT] = [
        Good::Food,
        Good::Water,
        Good::Ore,
        Good::Fuel,
        Good::Metals,
        Good::Electronics,
        Good::Medicine,
        Good::Luxuries,
    ];

    /// The index of this good in per-good arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable lowercase name used in logs, commands and the API. Never changes.
    pub fn name(self) -> &'static str {
        match self {
            Good::Food => "food",
            Good::Water => "water",
            Good::Ore => "ore",
            Good::Fuel => "fuel",
            Good::Metals => "metals",
            Good::Electronics => "electronics",
            Good::Medicine => "medicine",
            Good::Luxuries => "luxuries",
        }
    }

    /// The price in credits of one unit when a market holds exactly its target stock. A
    /// multiple of 4, so the price bounds (a quarter to four times this) are whole credits.
    pub fn base_price_cr(self) -> u64 {
        match self {
            Good::Food => 12,
            Good::Water => 8,
            Good::Ore => 20,
            Good::Fuel => 24,
            Good::Metals => 48,
            Good::Electronics => 160,
            Good::Medicine => 120,
            Good::Luxuries => 280,
        }
    }

    /// Hold space one unit takes, in hold units (bulky raw goods take two).
    pub fn hold_units_per_unit(self) -> u32 {
        match self {
            Good::Ore | Good::Metals => 2,
            _ => 1,
        }
    }

    /// The stock at which a market prices this good at its base price, in units. Cheap goods
    /// move in larger amounts.
    pub fn target_stock_units(self) -> u64 {
        match self {
            Good::Food | Good::Water => 2_000,
            Good::Ore | Good::Fuel => 1_500,
            Good::Metals => 1_000,
            Good::Electronics | Good::Medicine => 500,
            Good::Luxuries => 250,
        }
    }

    /// The good called `text`: any case, surrounding spaces ignored.
    pub fn parse(text: &str) -> Result<Good, UnknownGood> {
        let folded = text.trim().to_lowercase();
        if let Some(good) = Good::ALL.into_iter().find(|g| g.name() == folded) {
            return Ok(good);
        }
        Err(UnknownGood {
            asked: text.trim().chars().take(40).collect(),
            suggestion: suggest(&folded),
        })
    }
}

impl fmt::Display for Good {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Good {
    type Err = UnknownGood;
    fn from_str(text: &str) -> Result<Good, UnknownGood> {
        Good::parse(text)
    }
}

/// A name that is no good's name. The message suggests the closest name when one is close
/// (`no good 'fod'; did you mean 'food'?`), and otherwise lists the goods.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", unknown_good_message(.asked, .suggestion))]
pub struct UnknownGood {
    /// What was asked for, trimmed (at most 40 characters of it).
    pub asked: String,
    /// The closest good, if one is within a third of the name's length in edits.
    pub suggestion: Option<Good>,
}

fn unknown_good_message(asked: &str, suggestion: &Option<Good>) -> String {
    let asked = asked.escape_default();
    match suggestion {
        Some(good) => format!("no good '{asked}'; did you mean '{good}'?"),
        None => {
            let names: Vec<&str> = Good::ALL.iter().map(|g| g.name()).collect();
            format!("no good '{asked}'; the goods are {}", names.join(", "))
        }
    }
}

/// The good whose name is closest to `folded` by edit distance, if within a third of its length
/// (at least one edit). Ties go to the first good.
fn suggest(folded: &str) -> Option<Good> {
    let asked: Vec<char> = folded.chars().collect();
    let limit = (asked.len() / 3).max(1);
    Good::ALL
        .into_iter()
        .map(|g| (edit_distance(&asked, g.name()), g))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, g)| (d, g.index()))
        .map(|(_, g)| g)
}

/// Levenshtein distance in chars. Names are short (the input is cut to 40 chars by callers'
/// messages, and good names are at most 11), so the quadratic table is tiny.
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// What a ship carries: a count per good. 32 bytes, copied freely (players are many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cargo {
    units: [u32; GOOD_COUNT],
}

/// A cargo change that cannot happen. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CargoError {
    #[error("cannot hold more {good}: {have} + {add} units is over the limit of a count")]
    Overflow { good: Good, have: u32, add: u64 },
    #[error("only {have} {good} in the hold, not {want}")]
    NotEnough { good: Good, have: u32, want: u64 },
}

/// A cargo text that does not parse. Messages say what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CargoParseError {
    #[error("an empty cargo is written '-', not an empty text")]
    Empty,
    #[error("cargo text is {0} bytes; at most {MAX_CARGO_TEXT_BYTES}")]
    TooLong(usize),
    #[error("cargo item '{0}' is not 'good:quantity' (e.g. 'food:3')")]
    NoColon(String),
    #[error("cargo item: {0}")]
    UnknownGood(#[from] UnknownGood),
    #[error(
        "quantity of {good} is '{text}': write a whole number from 1 to {}",
        u32::MAX
    )]
    BadQuantity { good: Good, text: String },
    #[error("{0} is listed twice; list each good once")]
    Duplicate(Good),
}

impl Cargo {
    /// An empty hold.
    pub fn new() -> Cargo {
        Cargo::default()
    }

    /// Units of `good` on board.
    pub fn get(&self, good: Good) -> u32 {
        self.units[good.index()]
    }

    /// Adds `qty` units of `good`, or changes nothing and says why.
    pub fn add(&mut self, good: Good, qty: u64) -> Result<(), CargoError> {
        let have = self.get(good);
        let sum = u64::from(have)
            .checked_add(qty)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or(CargoError::Overflow {
                good,
                have,
                add: qty,
            })?;
        self.units[good.index()] = sum;
        Ok(())
    }

    /// Removes `qty` units of `good`, or changes nothing and says why.
    pub fn remove(&mut self, good: Good, qty: u64) -> Result<(), CargoError> {
        let have = self.get(good);
        let want = qty;
        let left = u64::from(have)
            .checked_sub(qty)
            .ok_or(CargoError::NotEnough { good, have, want })?;
        // `left <= have`, which is a u32.
        self.units[good.index()] = left as u32;
        Ok(())
    }

    /// Adds all of `other` (e.g. a wreck's contents), or changes nothing.
    pub fn add_all(&mut self, other: &Cargo) -> Result<(), CargoError> {
        let mut sum = *self;
        for (good, qty) in other.iter() {
            sum.add(good, u64::from(qty))?;
        }
        *self = sum;
        Ok(())
    }

    /// Empties the hold, returning what was in it.
    pub fn take_all(&mut self) -> Cargo {
        std::mem::take(self)
    }

    /// Units on board, all goods together.
    pub fn total_units(&self) -> u64 {
        self.units.iter().map(|&q| u64::from(q)).sum()
    }

    /// Hold space used, in hold units (compare with a ship's hold capacity).
    pub fn hold_used(&self) -> u64 {
        self.iter()
            .map(|(g, q)| u64::from(q) * u64::from(g.hold_units_per_unit()))
            .sum()
    }

    /// True when nothing is on board.
    pub fn is_empty(&self) -> bool {
        self.units.iter().all(|&q| q == 0)
    }

    /// The goods on board (non-zero counts), in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Good, u32)> + '_ {
        Good::ALL
            .into_iter()
            .map(|g| (g, self.get(g)))
            .filter(|&(_, q)| q > 0)
    }
}

/// The record form: `good:qty` for each good on board, in index order, comma-separated, or `-`
/// for an empty hold. Parsing it back gives the same cargo.
impl fmt::Display for Cargo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, (good, qty)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{good}:{qty}")?;
        }
        Ok(())
    }
}

/// Reads the record form. Goods may come in any order but only once each; quantities are 1 to
/// `u32::MAX` (a zero is never written, so it is refused as a sign of a bad record).
impl FromStr for Cargo {
    type Err = CargoParseError;
    fn from_str(text: &str) -> Result<Cargo, CargoParseError> {
        if text.len() > MAX_CARGO_TEXT_BYTES {
            return Err(CargoParseError::TooLong(text.len()));
        }
        match text {
            "" => return Err(CargoParseError::Empty),
            "-" => return Ok(Cargo::new()),
            _ => {}
        }
        let mut cargo = Cargo::new();
        for item in text.split(',') {
            let (name, qty) = item
                .split_once(':')
                .ok_or_else(|| CargoParseError::NoColon(item.escape_default().to_string()))?;
            let good = Good::parse(name)?;
            let bad = || CargoParseError::BadQuantity {
                good,
                text: qty.escape_default().to_string(),
            };
            let all_digits = !qty.is_empty() && qty.bytes().all(|b| b.is_ascii_digit());
            let qty: u32 = match qty.parse() {
                Ok(q) if all_digits && q > 0 => q,
                _ => return Err(bad()),
            };
            if cargo.get(good) > 0 {
                return Err(CargoParseError::Duplicate(good));
            }
            cargo.units[good.index()] = qty;
        }
        Ok(cargo)
    }
}

/// Units per good as text, in the cargo's form (`food:3,ore:10`, `-` for none): for the
/// per-good counts of economy records, which may exceed a hold's `u32`.
pub fn units_text(units: &[u64; GOOD_COUNT]) -> String {
    let parts: Vec<String> = Good::ALL
        .iter()
        .filter(|g| units[g.index()] > 0)
        .map(|g| format!("{g}:{}", units[g.index()]))
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(",")
    }
}

/// A [`units_text`] that does not read back. The message names the bad item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitsParseError {
    #[error("item '{item}' is not 'good:quantity'")]
    NoColon { item: String },
    #[error(transparent)]
    UnknownGood(#[from] UnknownGood),
    #[error("quantity of {good} is '{qty}', not a whole number")]
    BadQuantity { good: Good, qty: String },
    #[error("{good} is zero or listed twice in '{text}'")]
    ZeroOrTwice { good: Good, text: String },
}

/// Reads [`units_text`] back; the message names the bad item.
pub fn parse_units(text: &str) -> Result<[u64; GOOD_COUNT], UnitsParseError> {
    let mut units = [0u64; GOOD_COUNT];
    if text == "-" {
        return Ok(units);
    }
    for item in text.split(',') {
        let (name, qty) = item
            .split_once(':')
            .ok_or_else(|| UnitsParseError::NoColon {
                item: item.to_string(),
            })?;
        let good = Good::parse(name)?;
        let qty: u64 = qty.parse().map_err(|_| UnitsParseError::BadQuantity {
            good,
            qty: qty.to_string(),
        })?;
        if qty == 0 || units[good.index()] != 0 {
            return Err(UnitsParseError::ZeroOrTwice {
                good,
                text: text.to_string(),
            });
        }
        units[good.index()] = qty;
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_counts_round_trip_as_text() {
        let mut u = [0u64; GOOD_COUNT];
        assert_eq!(super::units_text(&u), "-");
        assert_eq!(super::parse_units("-").unwrap(), u);
        u[2] = 5_000_000_000;
        u[7] = 1;
        let text = super::units_text(&u);
        assert_eq!(super::parse_units(&text).unwrap(), u);
        assert!(super::parse_units("ore:0").is_err());
        assert!(super::parse_units("ore:1,ore:2").is_err());
        assert!(super::parse_units("gold:1").is_err());
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_stable_lowercase_and_parse_back_in_any_case() {
        let names: Vec<&str> = Good::ALL.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                "food",
                "water",
                "ore",
                "fuel",
                "metals",
                "electronics",
                "medicine",
                "luxuries"
            ]
        );
        for (i, g) in Good::ALL.into_iter().enumerate() {
            assert_eq!(g.index(), i);
            assert_eq!(Good::parse(&g.name().to_uppercase()), Ok(g));
            assert_eq!(
                g.base_price_cr() % 4,
                0,
                "{g}: bounds must be whole credits"
            );
        }
        assert_eq!(" Ore ".parse::<Good>(), Ok(Good::Ore));
    }

    #[test]
    fn an_unknown_good_suggests_the_closest_name_or_lists_them() {
        let err = Good::parse("fod").unwrap_err();
        assert_eq!(err.suggestion, Some(Good::Food));
        assert_eq!(err.to_string(), "no good 'fod'; did you mean 'food'?");
        let err = Good::parse("spice").unwrap_err();
        assert_eq!(err.suggestion, None);
        assert!(err.to_string().contains("food, water, ore"), "{err}");
        assert!(Good::parse("electronix")
            .unwrap_err()
            .to_string()
            .contains("electronics"));
    }

    #[test]
    fn cargo_counts_are_checked() {
        let mut c = Cargo::new();
        c.add(Good::Ore, 10).unwrap();
        c.add(Good::Food, 3).unwrap();
        assert_eq!(c.total_units(), 13);
        assert_eq!(c.hold_used(), 23, "ore takes two hold units");
        assert!(matches!(
            c.remove(Good::Ore, 11),
            Err(CargoError::NotEnough { have: 10, .. })
        ));
        assert!(c.add(Good::Ore, u64::from(u32::MAX)).is_err());
        assert_eq!(c.get(Good::Ore), 10, "a refused change changes nothing");
        c.remove(Good::Ore, 10).unwrap();
        assert_eq!(c.to_string(), "food:3");
    }

    #[test]
    fn cargo_text_form_is_compact_and_errors_name_the_problem() {
        let mut c = Cargo::new();
        assert_eq!(c.to_string(), "-");
        c.add(Good::Ore, 10).unwrap();
        c.add(Good::Food, 3).unwrap();
        assert_eq!(c.to_string(), "food:3,ore:10");
        assert_eq!("ore:10,food:3".parse::<Cargo>(), Ok(c));
        let err = |s: &str| s.parse::<Cargo>().unwrap_err().to_string();
        assert!(err("").contains("'-'"));
        assert!(err("food").contains("good:quantity"));
        assert!(err("fod:3").contains("did you mean 'food'"));
        assert!(err("food:0").contains("whole number"));
        assert!(err("food:+3").contains("whole number"));
        assert!(err("food:99999999999").contains("whole number"));
        assert!(err("food:1,food:2").contains("twice"));
        assert!(err(&"x".repeat(300)).contains("at most"));
    }

    fn any_cargo() -> impl Strategy<Value = Cargo> {
        proptest::array::uniform8(prop_oneof![Just(0u32), any::<u32>(), 0u32..100])
            .prop_map(|units| Cargo { units })
    }

    proptest! {
        #[test]
        fn cargo_text_round_trips(c in any_cargo()) {
            let text = c.to_string();
            prop_assert!(text.len() <= MAX_CARGO_TEXT_BYTES);
            prop_assert_eq!(text.parse::<Cargo>(), Ok(c));
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<Cargo>();
            let _ = Good::parse(&text);
        }

        #[test]
        fn add_then_remove_restores_the_hold(c in any_cargo(), g in 0usize..GOOD_COUNT, q: u32) {
            let good = Good::ALL[g];
            let mut d = c;
            if d.add(good, u64::from(q)).is_ok() {
                prop_assert_eq!(d.total_units(), c.total_units() + u64::from(q));
                d.remove(good, u64::from(q)).unwrap();
            }
            prop_assert_eq!(d, c);
        }
    }
}
