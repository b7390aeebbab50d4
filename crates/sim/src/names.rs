//! Player names (star systems' names are [`super::galaxy`]'s): what a valid name is, the form a
//! name is stored and shown in, and when two names count as the same for uniqueness.
//!
//! - **Form**: a name is kept in Unicode NFC, so `Zoë` typed precomposed or decomposed is one
//!   name, stored and shown the same way.
//! - **Valid**: 1 to [`MAX_NAME_CHARS`] characters (as typed: JSON Schema's `maxLength` counts
//!   the same way, so `openapi.json` states the rule exactly), no leading or trailing white
//!   space, no control character (category Cc), and nothing invisible or bidirectional: no
//!   format character (category Cf: zero-width spaces and joiners, bidirectional marks,
//!   embeddings, overrides and isolates, the byte-order mark, the soft hyphen) and no other
//!   default-ignorable code point (Hangul fillers, the combining grapheme joiner...), except
//!   variation selectors (emoji need them; the uniqueness key ignores them).
//! - **Same**: two names are the same player's if their [`key`]s are equal: full case folding
//!   and the UTS #39 confusable skeleton (`Ann`, `ann`, `ANN`, `Аnn` with a Cyrillic А and `Ann`
//!   with a variation selector share a key). [`NameIndex`] is the index of taken names.
//!
//! Names taken before these rules keep working: the index accepts any name already logged
//! ([`NameIndex::insert`] never refuses), only new joins are checked ([`NameIndex::similar_to`]).
//!
//! Pure functions of their input: never reads a clock, the disk or any global state. The
//! character data comes from well-kept crates (ICU4X, unicode-rs), not from tables kept here.

use std::collections::BTreeMap;

use icu_casemap::CaseMapper;
use icu_properties::props::{
    BinaryProperty, DefaultIgnorableCodePoint, EnumeratedProperty, GeneralCategory,
    VariationSelector,
};
use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

/// Longest player name, in characters (Unicode scalar values) as typed, as JSON Schema's
/// `maxLength` counts them.
pub const MAX_NAME_CHARS: usize = 48;

/// Why a name cannot be a new player's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a player name cannot be empty")]
    Empty,
    #[error("a player name is at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error(
        "a player name cannot contain control characters (Unicode category Cc): \
         {code} at character {at}"
    )]
    Control { code: CodePoint, at: usize },
    #[error(
        "a player name cannot contain invisible or bidirectional control characters \
         (Unicode format characters, category Cf, such as zero-width spaces and joiners and \
         bidirectional marks, overrides and isolates; and other default-ignorable characters \
         such as Hangul fillers): {code} at character {at}"
    )]
    Invisible { code: CodePoint, at: usize },
    #[error("a player name cannot start or end with a space")]
    Spaces,
}

/// A character as a person can look it up: `U+200B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePoint(pub char);

impl std::fmt::Display for CodePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "U+{:04X}", u32::from(self.0))
    }
}

/// The name rules as a regular expression for the OpenAPI document (JSON Schema's `pattern`:
/// ECMA-262 with the `u` flag; also Python's `re` and Rust's `regex`): no control or format
/// character, none of the other invisible characters ([`INVISIBLE_OTHER`]), no white space
/// (Unicode White_Space, what `str::trim` strips) at either end. Built from the same Unicode
/// data the server checks with, every class spelled out as code points: characters of the
/// Basic Multilingual Plane as `\uXXXX`, those above as themselves (no `\p{..}` and no
/// `\u{..}`, which not every engine reads). The length is `minLength: 1` and `maxLength:`
/// [`MAX_NAME_CHARS`] beside it.
pub fn name_pattern() -> String {
    let refused = |c: char| c.is_control() || is_invisible(c);
    let inside = class(refused);
    let edge = class(|c| refused(c) || c.is_whitespace());
    format!("^[^{edge}](?:[^{inside}]*[^{edge}])?$")
}

/// The characters for which `member` holds, as the inside of a regex class of ranges.
fn class(member: impl Fn(char) -> bool) -> String {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        if !member(c) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(c) => *last = c,
            _ => ranges.push((c, c)),
        }
    }
    let escape = |c: char| match u32::from(c) {
        n if n > 0xFFFF => c.to_string(),
        n => format!("\\u{n:04x}"),
    };
    ranges
        .iter()
        .map(|&(a, b)| match a == b {
            true => escape(a),
            false => format!("{}-{}", escape(a), escape(b)),
        })
        .collect()
}

/// The characters refused as invisible that are not format characters (Cf): default-ignorable
/// code points that are not variation selectors. What [`name_pattern`] refuses besides Cc and Cf
/// (the tests check both against the Unicode data).
pub const INVISIBLE_OTHER: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{2065}', '\u{2065}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{E0000}', '\u{E0000}'),
    ('\u{E0002}', '\u{E001F}'),
    ('\u{E0080}', '\u{E00FF}'),
    ('\u{E01F0}', '\u{E0FFF}'),
];

/// The name a new player gets for `raw`: its NFC form, if that is a valid name.
pub fn canonical(raw: &str) -> Result<String, NameError> {
    if raw.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    let name: String = raw.nfc().collect();
    check_form(&name)?;
    Ok(name)
}

/// Checks a new player's name as typed (its NFC form is what counts): any printable Unicode,
/// spaces inside allowed, nothing invisible.
pub fn validate_name(raw: &str) -> Result<(), NameError> {
    canonical(raw).map(|_| ())
}

/// The rules on a name already in NFC form.
fn check_form(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    for (i, c) in name.chars().enumerate() {
        let (code, at) = (CodePoint(c), i + 1);
        if c.is_control() {
            return Err(NameError::Control { code, at });
        }
        if is_invisible(c) {
            return Err(NameError::Invisible { code, at });
        }
    }
    if name.trim() != name {
        return Err(NameError::Spaces);
    }
    Ok(())
}

/// A format character (Cf: zero-width, bidirectional controls, ...) or another character that
/// renders as nothing (Default_Ignorable_Code_Point), variation selectors excepted.
fn is_invisible(c: char) -> bool {
    if GeneralCategory::for_char(c) == GeneralCategory::Format {
        return true;
    }
    DefaultIgnorableCodePoint::for_char(c) && !VariationSelector::for_char(c)
}

/// The uniqueness key of a name: equal keys, same player. Case-folded (full folding), then the
/// UTS #39 skeleton (which also drops default-ignorable characters), folded again because a
/// skeleton may hold capitals (`0` becomes `O`). Not for display or storage: it is recomputed
/// from the name whenever needed, so a newer Unicode version can only change it between runs.
pub fn key(name: &str) -> String {
    let folder = CaseMapper::new();
    let nfc: String = name.nfc().collect();
    let folded = folder.fold_string(&nfc);
    let skel: String = skeleton(&folded).collect();
    folder.fold_string(&skel).into_owned()
}

/// Every name taken, with its account key hash, and which name holds each uniqueness key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameIndex {
    /// Name -> the hash of its access key.
    accounts: BTreeMap<String, String>,
    /// Uniqueness key -> the first name that took it. Derived from `accounts` (never stored):
    /// names that collide from before these rules all keep their accounts; this holds one.
    holders: BTreeMap<String, String>,
}

impl NameIndex {
    /// Notes a name as taken. Never refuses: a logged join stands, even one whose key
    /// collides with an older name (data written before these rules).
    pub fn insert(&mut self, name: String, account: String) {
        self.holders
            .entry(key(&name))
            .or_insert_with(|| name.clone());
        self.accounts.insert(name, account);
    }

    /// Whether exactly this name is taken.
    pub fn contains_name(&self, name: &str) -> bool {
        self.accounts.contains_key(name)
    }

    /// The taken name that `name` would be confused with (itself, if taken exactly), if any.
    pub fn similar_to(&self, name: &str) -> Option<&str> {
        if let Some((taken, _)) = self.accounts.get_key_value(name) {
            return Some(taken);
        }
        self.holders.get(&key(name)).map(String::as_str)
    }

    /// Names and account key hashes, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.accounts.iter()
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

impl<'a> IntoIterator for &'a NameIndex {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.accounts.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZWSP: char = '\u{200B}';
    const RLO: char = '\u{202E}';

    #[test]
    fn names_may_hold_spaces_and_unicode_but_not_control_characters() {
        assert!(validate_name("Barnard's Kid").is_ok());
        assert!(validate_name("Ünïcødé 🚀").is_ok());
        assert!(
            validate_name("❤\u{FE0F} Ann").is_ok(),
            "emoji variation selector"
        );
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(" x"), Err(NameError::Spaces));
        assert_eq!(validate_name("x\u{3000}"), Err(NameError::Spaces));
        let newline = NameError::Control {
            code: CodePoint('\n'),
            at: 2,
        };
        assert_eq!(validate_name("a\nb"), Err(newline));
        assert_eq!(validate_name(&"x".repeat(49)), Err(NameError::TooLong));
    }

    #[test]
    fn names_are_stored_in_nfc() {
        let decomposed = "Zoe\u{0308}";
        assert_eq!(canonical(decomposed).unwrap(), "Zo\u{00EB}");
        assert_eq!(canonical("Zo\u{00EB}").unwrap(), "Zo\u{00EB}");
        // The length is counted as typed (as the document's maxLength counts it), not composed.
        let long = "e\u{0301}".repeat(24);
        assert_eq!(long.chars().count(), 48);
        assert_eq!(canonical(&long).unwrap(), "\u{00E9}".repeat(24));
        let too_long = "e\u{0301}".repeat(25);
        assert_eq!(canonical(&too_long), Err(NameError::TooLong));
    }

    #[test]
    fn invisible_and_bidirectional_characters_are_refused_and_named() {
        for c in [
            ZWSP, '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', // zero-width
            '\u{200E}', '\u{200F}', '\u{061C}', // bidi marks
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', RLO, // embeddings, overrides
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', // isolates
            '\u{3164}', '\u{115F}', '\u{034F}', // Hangul fillers, grapheme joiner
        ] {
            let name = format!("An{c}n");
            assert_eq!(
                validate_name(&name),
                Err(NameError::Invisible {
                    code: CodePoint(c),
                    at: 3
                }),
                "U+{:04X}",
                u32::from(c)
            );
        }
        let e = validate_name(&format!("{RLO}nnA")).unwrap_err().to_string();
        assert!(e.contains("U+202E at character 1"), "{e}");
        assert!(e.contains("category Cf"), "{e}");
    }

    /// [`INVISIBLE_OTHER`] says exactly what [`is_invisible`]
    /// refuses besides format characters.
    #[test]
    fn the_pattern_lists_every_invisible_character_that_is_not_a_format_character() {
        let mut ranges: Vec<(char, char)> = Vec::new();
        let other = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .filter(|&c| {
                is_invisible(c) && GeneralCategory::for_char(c) != GeneralCategory::Format
            });
        for c in other {
            match ranges.last_mut() {
                Some((_, last)) if u32::from(*last) + 1 == u32::from(c) => *last = c,
                _ => ranges.push((c, c)),
            }
        }
        let text: Vec<String> = ranges
            .iter()
            .map(|(a, b)| format!("{}-{}", CodePoint(*a), CodePoint(*b)))
            .collect();
        assert_eq!(ranges, INVISIBLE_OTHER, "{text:?}");
    }

    #[test]
    fn case_and_confusables_share_a_key() {
        let ann = key("Ann");
        for same in [
            "ann",
            "ANN",
            "aNn",
            "\u{0410}nn",
            "Ann\u{FE0F}",
            "\u{FF21}nn",
        ] {
            assert_eq!(key(same), ann, "{same:?}");
        }
        assert_eq!(key("Zo\u{00EB}"), key("zoe\u{0308}"));
        assert_eq!(key("B0b"), key("bob"), "digit zero and letter o");
        assert_eq!(key("Straße"), key("STRASSE"), "full case folding");
        assert_ne!(key("Ann"), key("Anne"));
        assert_ne!(key("Bob"), key("Rob"));
    }

    #[test]
    fn the_index_refuses_look_alikes_but_keeps_what_was_logged() {
        let mut index = NameIndex::default();
        index.insert("Ann".into(), "k1".into());
        assert_eq!(index.similar_to("Ann"), Some("Ann"));
        assert_eq!(index.similar_to("ann"), Some("Ann"));
        assert_eq!(index.similar_to("\u{0410}NN"), Some("Ann"));
        assert_eq!(index.similar_to("Bob"), None);
        // Logged before the rules: both stay, the first keeps the key.
        index.insert("ann".into(), "k2".into());
        assert_eq!(index.len(), 2);
        assert!(index.contains_name("ann"));
        assert_eq!(index.similar_to("ann"), Some("ann"), "exactly taken");
        assert_eq!(index.similar_to("ANN"), Some("Ann"));
    }
}
