//! The bug switches a run may turn on, by name (`--bug`). Until `mesh::protocol::bugs` is
//! merged there are none: asking for one is an error, never a silent no-op.

/// A bug switch (none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {}

/// The switch named `name`, if any is asked for.
pub fn parse(name: Option<&str>) -> anyhow::Result<Option<Bug>> {
    match name {
        None => Ok(None),
        Some(n) => anyhow::bail!("no bug switch {n:?}: this build has none"),
    }
}

/// Turns `bug` on for the seeds of this thread.
pub fn set(bug: Option<Bug>) {
    let _ = bug;
}
