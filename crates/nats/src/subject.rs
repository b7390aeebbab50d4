//! Log names as NATS subjects, and back: `transitions` is `mlt.log.transitions`,
//! `systems/sol.2` is `mlt.log.systems.sol_2e2`.
//!
//! A name's folders (`/`) become subject tokens (`.`); every byte other than an ASCII letter,
//! digit or `-` (a `.` in an instance's slug, `_` itself, anything a subject cannot hold) is
//! written `_` and two lowercase hex digits, so the mapping is one to one and reversible. This
//! module never sees record bytes.

/// The subjects of every log: `mlt.log.>` is the stream's subject filter.
pub const LOG_SUBJECT_PREFIX: &str = "mlt.log.";

/// The subject of log `name`.
pub fn of_log(name: &str) -> String {
    assert!(!name.is_empty(), "a log has a name");
    let mut subject = String::from(LOG_SUBJECT_PREFIX);
    for (i, folder) in name.split('/').enumerate() {
        assert!(!folder.is_empty(), "log name {name:?} has an empty folder");
        if i > 0 {
            subject.push('.');
        }
        for b in folder.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                subject.push(char::from(b));
            } else {
                subject.push_str(&format!("_{b:02x}"));
            }
        }
    }
    subject
}

/// The log name of `subject`, if it is a log's subject written by [`of_log`].
pub fn to_log(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(LOG_SUBJECT_PREFIX)?;
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
    }
}
