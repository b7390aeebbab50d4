//! Where the player's access token lives on this machine: [`ENV_TOKEN`] if set, else
//! `$XDG_CONFIG_HOME/mltrader/token` (or `~/.config/mltrader/token`), a file only its owner
//! may read (mode 0600).
//!
//! Never prints a token, and never writes one anywhere else.

use std::io::Write;
use std::path::PathBuf;

use super::Failure;

/// Environment variable: a token to use instead of the saved one.
pub const ENV_TOKEN: &str = "MLTRADER_TOKEN";

/// The token file's path.
pub fn path() -> Result<PathBuf, Failure> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })
        .ok_or_else(|| {
            Failure::local(
                "no_config_dir",
                format!("neither XDG_CONFIG_HOME nor HOME is set: set {ENV_TOKEN} instead"),
            )
        })?;
    Ok(config.join("mltrader").join("token"))
}

/// The token to use: [`ENV_TOKEN`], else the saved one, else none.
pub fn load() -> Result<Option<String>, Failure> {
    if let Ok(t) = std::env::var(ENV_TOKEN) {
        if !t.trim().is_empty() {
            return Ok(Some(t.trim().to_string()));
        }
    }
    let Ok(path) = path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::local(
            "token_file",
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Whether a token is saved already.
pub fn saved() -> Result<Option<PathBuf>, Failure> {
    let p = path()?;
    Ok(p.exists().then_some(p))
}

/// Saves `token` (readable by its owner only); returns where.
pub fn save(token: &str) -> Result<PathBuf, Failure> {
    let path = path()?;
    let fail = |what: &str, e: std::io::Error| {
        Failure::local(
            "token_file",
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    let dir = path
        .parent()
        .ok_or_else(|| Failure::local("token_file", "the token path has no folder"))?;
    std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
    let tmp = dir.join(".token.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| fail("write", e))?;
    // A file left from before keeps its mode: make sure it is the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("protect", e))?;
    }
    writeln!(file, "{token}")
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail("write", e))?;
    Ok(path)
}
