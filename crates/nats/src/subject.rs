//! Log names as NATS subjects, and back: `transitions` is `mlt.log.transitions`,
//! `systems/sol.2` is `mlt.log.systems.sol_2e2`; and the pair subjects of issue 19, one per
//! origin and destination unit: `mlt.jump.sol.alpha-centauri`.
//!
//! A name's folders (`/`) become subject tokens (`.`); every byte other than an ASCII letter,
//! digit or `-` (a `.` in an instance's slug, `_` itself, anything a subject cannot hold) is
//! written `_` and two lowercase hex digits, so the mapping is one to one and reversible. A
//! pair subject's two tokens are the two systems' slugs escaped the same way. In region mode
//! (issue 20) the same names sit under a region's prefix (`mlt.eu.log.`, `mlt.us.jump.`:
//! the `_with` functions, crate::region). This module
//! never sees record bytes.

/// The subjects of every log: `mlt.log.>` is the stream's subject filter.
pub const LOG_SUBJECT_PREFIX: &str = "mlt.log.";

/// The subjects of every pair of units: `mlt.jump.>` is the jumps' stream's subject filter.
pub const JUMP_SUBJECT_PREFIX: &str = "mlt.jump.";

/// Writes `token` escaped: letters, digits and `-` as themselves, any other byte `_` and two
/// hex digits.
fn push_escaped(subject: &mut String, token: &str) {
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            subject.push(char::from(b));
        } else {
            subject.push_str(&format!("_{b:02x}"));
        }
    }
}

/// The pair subject of jumps from the unit of system slug `from` to that of `to`.
pub fn of_pair(from: &str, to: &str) -> String {
    of_pair_with(JUMP_SUBJECT_PREFIX, from, to)
}

/// [`of_pair`] under `prefix` (`mlt.jump.`, or a region's `mlt.<region>.jump.`:
/// crate::region::jump_prefix).
pub fn of_pair_with(prefix: &str, from: &str, to: &str) -> String {
    assert!(
        prefix.ends_with('.'),
        "a prefix ends with a dot: {prefix:?}"
    );
    assert!(
        !from.is_empty() && !to.is_empty(),
        "a pair names two systems ({from:?}, {to:?})"
    );
    assert!(from != to, "a pair is of two systems, not {from:?} twice");
    let mut subject = String::from(prefix);
    push_escaped(&mut subject, from);
    subject.push('.');
    push_escaped(&mut subject, to);
    subject
}

/// The two slugs (origin, destination) of `subject`, if it is a pair subject written by
/// [`of_pair`].
pub fn to_pair(subject: &str) -> Option<(String, String)> {
    to_pair_with(JUMP_SUBJECT_PREFIX, subject)
}

/// [`to_pair`] under `prefix` ([`of_pair_with`]).
pub fn to_pair_with(prefix: &str, subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(prefix)?;
    let (from, to) = rest.split_once('.')?;
    Some((unescape(from)?, unescape(to)?))
}

/// The bytes [`push_escaped`] wrote as `token`, if it wrote them.
fn unescape(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut it = token.bytes();
    while let Some(b) = it.next() {
        match b {
            b'_' => {
                let hex = [it.next()?, it.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => bytes.push(b),
            _ => return None,
        }
    }
    if bytes.is_empty() {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The subject of log `name`.
pub fn of_log(name: &str) -> String {
    of_log_with(LOG_SUBJECT_PREFIX, name)
}

/// [`of_log`] under `prefix` (`mlt.log.`, or a region's `mlt.<region>.log.`:
/// crate::region::log_prefix).
pub fn of_log_with(prefix: &str, name: &str) -> String {
    assert!(
        prefix.ends_with('.'),
        "a prefix ends with a dot: {prefix:?}"
    );
    assert!(!name.is_empty(), "a log has a name");
    let mut subject = String::from(prefix);
    for (i, folder) in name.split('/').enumerate() {
        assert!(!folder.is_empty(), "log name {name:?} has an empty folder");
        if i > 0 {
            subject.push('.');
        }
        push_escaped(&mut subject, folder);
    }
    subject
}

/// The log name of `subject`, if it is a log's subject written by [`of_log`].
pub fn to_log(subject: &str) -> Option<String> {
    to_log_with(LOG_SUBJECT_PREFIX, subject)
}

/// [`to_log`] under `prefix` ([`of_log_with`]).
pub fn to_log_with(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?;
    let mut bytes = Vec::with_capacity(rest.len());
    let mut it = rest.bytes();
    while let Some(b) = it.next() {
        match b {
            b'.' => bytes.push(b'/'),
            b'_' => {
                let hex = [it.next()?, it.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => bytes.push(b),
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_map_to_readable_subjects() {
        assert_eq!(of_log("transitions"), "mlt.log.transitions");
        assert_eq!(of_log("systems/sol"), "mlt.log.systems.sol");
        assert_eq!(of_log("systems/sol.2"), "mlt.log.systems.sol_2e2");
        assert_eq!(of_log("a_b"), "mlt.log.a_5fb");
        assert_eq!(
            of_pair("sol", "alpha-centauri"),
            "mlt.jump.sol.alpha-centauri"
        );
        assert_eq!(of_pair("barnard's", "sol"), "mlt.jump.barnard_27s.sol");
        assert_eq!(
            to_pair("mlt.jump.sol.a_2eb"),
            Some(("sol".into(), "a.b".into()))
        );
        assert_eq!(to_pair("mlt.jump.sol"), None, "two tokens");
        assert_eq!(
            to_pair("mlt.jump.sol.a.b"),
            None,
            "a dot is escaped in a slug"
        );
        assert_eq!(to_pair("mlt.log.sol.b"), None);
        assert_eq!(
            of_pair_with("mlt.us.jump.", "sol", "alpha-centauri"),
            "mlt.us.jump.sol.alpha-centauri"
        );
        assert_eq!(
            to_pair_with("mlt.us.jump.", "mlt.us.jump.sol.a_2eb"),
            Some(("sol".into(), "a.b".into()))
        );
        assert_eq!(
            to_pair("mlt.us.jump.sol.b"),
            None,
            "a region's subject is not plain"
        );
        assert_eq!(
            of_log_with("mlt.eu.log.", "systems/sol.2"),
            "mlt.eu.log.systems.sol_2e2"
        );
        assert_eq!(
            to_log_with("mlt.eu.log.", "mlt.eu.log.systems.sol"),
            Some("systems/sol".into())
        );
        assert_eq!(to_log("mlt.eu.log.systems.sol"), None);
    }

    proptest! {
        /// Every name comes back from its subject, and the subject is a valid NATS subject
        /// (no whitespace, wildcards or empty tokens).
        #[test]
        fn names_round_trip(name in "[a-z0-9._*> é-]{1,12}(/[a-z0-9._-]{1,12}){0,2}") {
            let subject = of_log(&name);
            prop_assert_eq!(to_log(&subject), Some(name.clone()));
            prop_assert!(subject.split('.').all(|t| !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
        }

        /// Every pair of slugs comes back from its subject, which has exactly four tokens.
        #[test]
        fn pairs_round_trip(from in "[a-z0-9._*> é'-]{1,12}", to in "[a-z0-9._*> é'-]{1,12}") {
            prop_assume!(from != to);
            let subject = of_pair(&from, &to);
            prop_assert_eq!(to_pair(&subject), Some((from.clone(), to.clone())));
            prop_assert_eq!(subject.split('.').count(), 4);
            prop_assert!(subject.split('.').all(|t| !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
        }
    }
}
