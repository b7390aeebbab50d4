//! The credentials file: a user and a password, in TOML, as `scripts/nats-cluster.sh` writes
//! it:
//!
//! ```toml
//! user = "mltrader"
//! password = "..."
//! ```
//!
//! (NATS `.creds` files, a JWT and an nkey seed for operator mode, are not read yet.) This
//! module never prints the password.

use std::path::Path;

use serde::Deserialize;

use crate::NatsError;

/// A user and a password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

impl Credentials {
    /// Reads the credentials file at `path`; a missing, unreadable or malformed file, or an
    /// empty user or password, is an error naming the file.
    pub fn load(path: &Path) -> Result<Credentials, NatsError> {
        let bad = |reason: String| NatsError::Credentials {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let creds: Credentials = toml::from_str(&text).map_err(|e| {
            bad(format!(
                "not `user = \"...\"` and `password = \"...\"`: {e}"
            ))
        })?;
        if creds.user.is_empty() || creds.password.is_empty() {
            return Err(bad("the user or the password is empty".into()));
        }
        Ok(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_malformed_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Credentials::load(&missing).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("cannot read"), "{err}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "user = \"a\"\n").unwrap();
        let err = Credentials::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad") && err.contains("password"), "{err}");
        let good = dir.path().join("good");
        std::fs::write(&good, "user = \"a\"\npassword = \"s3cret\"\n").unwrap();
        let creds = Credentials::load(&good).unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_str()),
            ("a", "s3cret")
        );
        assert!(
            !format!("{creds:?}").contains("s3cret"),
            "the password is never printed"
        );
    }
}
