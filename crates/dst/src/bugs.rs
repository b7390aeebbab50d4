//! The bug switches a run may turn on, by name (`--bug`): the protocol core's own
//! (`mesh::protocol::bugs`), each re-introducing one real bug where it would live. The switch
//! is per thread: each runner thread sets it before its seeds.
//!
//! Never changes what a seed does unless a switch is asked for.

pub use mesh::protocol::bugs::Bug;

/// The switch named `name`, if one is asked for; an unknown name is an error listing them.
pub fn parse(name: Option<&str>) -> anyhow::Result<Option<Bug>> {
    let Some(name) = name else {
        return Ok(None);
    };
    match Bug::parse(name) {
        Some(bug) => Ok(Some(bug)),
        None => {
            let known: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            anyhow::bail!("no bug switch {name:?}; there are: {}", known.join(", "))
        }
    }
}

/// Turns `bug` on (or every switch off) for the seeds of this thread.
pub fn set(bug: Option<Bug>) {
    mesh::protocol::bugs::set(bug);
}
