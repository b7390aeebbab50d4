//! Regions (issue 20, docs/REGIONS.md): a region is a NATS cluster with its own JetStream
//! domain named after it (`eu`, `us`), joined to the others by leafnodes. This module owns a
//! region's name and the subjects and names derived from it: the prefixes of its logs
//! (`mlt.<region>.log.`) and pair subjects (`mlt.<region>.jump.`), the JetStream API prefix
//! of its domain (`$JS.<region>.API`), and the name of a copy of another region's stream in
//! this one (`<STREAM>_OF_<region>`). It never talks to a server.

use crate::subject::{JUMP_SUBJECT_PREFIX, LOG_SUBJECT_PREFIX};

/// Subjects a leafnode between two regions must not carry, in both directions (a remote's
/// `deny_imports` and `deny_exports`): the object stores' subjects. Every region has an object
/// store `mlt_snapshots` of the same name; a put is a plain publish on `$O.<bucket>.C.>` and
/// `$O.<bucket>.M.>`, which nats-server (2.15.1) does not deny between domains (it denies
/// `$JS.API.>`, `$KV.>` and `$OBJ.>`), so without this a snapshot put in one region is stored in
/// the other region's bucket too, and a unit there recovers from it (tests/regions_buckets.rs).
pub const LEAF_DENIED_SUBJECTS: &[&str] = &["$O.>"];

/// The longest region name, in bytes.
pub const MAX_REGION_NAME_BYTES: usize = 16;
const _: () = assert!(MAX_REGION_NAME_BYTES == sim::galaxy::MAX_REGION_BYTES);

/// Whether `name` can name a region: 1 to [`MAX_REGION_NAME_BYTES`] lowercase ASCII letters,
/// digits or `-` (a subject token, a domain, a stream name's suffix: as the galaxy file
/// checks, `sim::galaxy::MAX_REGION_BYTES`), and none of `log`, `jump`, `req` (the second
/// token of the subjects without regions: `mlt.jump.<region>.…` would read as a pair).
pub fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REGION_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != "log"
        && name != "jump"
        && name != "req"
}

/// Why a region name was refused.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a region name: 1 to {MAX_REGION_NAME_BYTES} lowercase letters, digits or '-', not 'log', 'jump' or 'req'")]
pub struct BadRegionName {
    pub name: String,
}

/// `name` if it can name a region.
pub fn checked(name: &str) -> Result<String, BadRegionName> {
    if is_region_name(name) {
        Ok(name.to_string())
    } else {
        Err(BadRegionName { name: name.into() })
    }
}

/// Every system's home region (slug to region) as the galaxy file names them, for
/// `NatsLinks::set_homes`; None when the galaxy names no regions.
pub fn galaxy_homes(
    galaxy: &sim::galaxy::Galaxy,
) -> Option<std::collections::HashMap<String, String>> {
    galaxy
        .ids()
        .map(|id| {
            let home = galaxy.region_of(id)?;
            Some((galaxy.slug(id).to_string(), home.to_string()))
        })
        .collect()
}

/// The prefix of the logs' subjects: `mlt.log.` without regions, `mlt.<region>.log.` in
/// region `region`.
pub fn log_prefix(region: Option<&str>) -> String {
    match region {
        None => LOG_SUBJECT_PREFIX.to_string(),
        Some(r) => {
            assert!(is_region_name(r), "{r:?} is a region name");
            format!("mlt.{r}.log.")
        }
    }
}

/// The prefix of the pair subjects of jumps landing in `region` (the destination's home):
/// `mlt.jump.` without regions, `mlt.<region>.jump.` with.
pub fn jump_prefix(region: Option<&str>) -> String {
    match region {
        None => JUMP_SUBJECT_PREFIX.to_string(),
        Some(r) => {
            assert!(is_region_name(r), "{r:?} is a region name");
            format!("mlt.{r}.jump.")
        }
    }
}

/// The JetStream API prefix of `region`'s domain, as another domain reaches it.
pub fn api_prefix(region: &str) -> String {
    assert!(is_region_name(region), "{region:?} is a region name");
    format!("$JS.{region}.API")
}

/// The name of the copy, in another region, of stream `stream` of region `region`:
/// `MLT_LOGS_OF_us`.
pub fn copy_name(stream: &str, region: &str) -> String {
    assert!(is_region_name(region), "{region:?} is a region name");
    format!("{stream}_OF_{region}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_and_prefixes() {
        assert!(is_region_name("eu"));
        assert!(is_region_name("us-east-1"));
        for bad in [
            "",
            "EU",
            "e.u",
            "log",
            "jump",
            "req",
            "a_b",
            "abcdefghijklmnopq",
        ] {
            assert!(!is_region_name(bad), "{bad:?}");
        }
        assert_eq!(log_prefix(None), "mlt.log.");
        assert_eq!(log_prefix(Some("eu")), "mlt.eu.log.");
        assert_eq!(jump_prefix(Some("us")), "mlt.us.jump.");
        assert_eq!(api_prefix("us"), "$JS.us.API");
        assert_eq!(copy_name("MLT_LOGS", "us"), "MLT_LOGS_OF_us");
    }
}
