//! What several commands share: finding the data directory and its galaxy.

use std::path::Path;

use anyhow::{bail, Context as _};

use sim::galaxy::{Galaxy, BUILTIN_STARS};
use store::datadir::DataDir;
use store::disk::write_atomic;

/// The galaxy of a data directory. A new directory takes `--galaxy FILE` (or the built-in
/// galaxy) and keeps a copy as `galaxy.toml`, so that its system ids never change; an existing
/// one refuses a `--galaxy` that differs from its copy.
pub fn galaxy_for(datadir: &DataDir, asked: Option<&Path>, create: bool) -> anyhow::Result<Galaxy> {
    let kept = datadir.galaxy_file();
    let asked_text = match asked {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read galaxy file {}", p.display()))?,
        ),
        None => None,
    };
    let text = if kept.exists() {
        let kept_text = std::fs::read_to_string(&kept)
            .with_context(|| format!("cannot read {}", kept.display()))?;
        if let Some(a) = &asked_text {
            if a != &kept_text {
                bail!(
                    "{} was created with another galaxy ({}); drop --galaxy or use a new --data directory",
                    datadir.root().display(),
                    kept.display()
                );
            }
        }
        kept_text
    } else {
        let text = asked_text.unwrap_or_else(|| BUILTIN_STARS.to_string());
        if create {
            // Validate before keeping it.
            Galaxy::from_toml_str(&text).map_err(|e| galaxy_error(asked, e))?;
            datadir
                .create()
                .with_context(|| format!("cannot create {}", datadir.root().display()))?;
            write_atomic(&kept, text.as_bytes())
                .with_context(|| format!("cannot write {}", kept.display()))?;
        }
        text
    };
    let source = if kept.exists() {
        Some(kept.as_path())
    } else {
        asked
    };
    Galaxy::from_toml_str(&text).map_err(|e| galaxy_error(source, e))
}

fn galaxy_error(path: Option<&Path>, e: impl std::fmt::Display) -> anyhow::Error {
    match path {
        Some(p) => anyhow::anyhow!("{}: {e}", p.display()),
        None => anyhow::anyhow!("built-in galaxy: {e}"),
    }
}

/// An existing data directory (for commands that only read).
pub fn existing_datadir(path: &Path) -> anyhow::Result<DataDir> {
    if !path.is_dir() {
        bail!(
            "no data directory at {}; start a galaxy with `mltrader serve --data {}` first",
            path.display(),
            path.display()
        );
    }
    Ok(DataDir::at(path))
}
