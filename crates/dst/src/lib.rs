//! mltrader's deterministic simulator: the jump protocol, its pipeline and its recovery, driven
//! in one process by one seed, under injected crashes, torn writes, disk errors and slow disks,
//! with the invariants checked after every step and every recovery, and the real auditor run on
//! the simulated logs at the end. The same seed gives the same run, bit for bit.
//!
//! Modules: [`disk`] (simulated log files and their faults), [`stream`] (a simulated
//! JetStream: subjects, message ids, fencing, the KV lease), [`nodes`] (the stream world's
//! nodes, takeovers and zombies), [`world`] (the state of a run and
//! the shard's steps), [`xnode`] (the cross-node world: units on several nodes, jumps
//! between them through pair subjects), [`workload`] (what players and primaries ask), [`scheduler`] (what
//! happens next), [`recovery`] (crash and restart), [`invariants`], [`trace`], [`runner`]
//! (many seeds on many threads). docs/TESTING.md explains it for a newcomer.
//!
//! Never reads a clock inside a seed, never iterates a hash map, never shares state between
//! seeds: a seed's run depends on its number (and the options) only.

pub mod bugs;
pub mod disk;
pub mod invariants;
pub mod nodes;
pub mod recovery;
pub mod runner;
pub mod scheduler;
pub mod stream;
pub mod trace;
pub mod workload;
pub mod world;
pub mod xnode;

use std::panic::AssertUnwindSafe;

use invariants::Violation;
use world::{Counts, World};

/// How to run a seed.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Steps before the final crash, restart and audit.
    pub steps: u64,
    /// Run the real auditor at the end (every `audit_every`-th seed; 0: never).
    pub audit_every: u64,
    /// Keep every trace line (for `--trace`, and for a failure's story).
    pub keep_trace: bool,
    pub faults: scheduler::Faults,
    /// Which world each seed runs.
    pub worlds: Worlds,
}

/// Which world the seeds run: the local files (one process, crashes and disk faults), the
/// stream (JetStream, nodes, leases, takeovers, zombies; `nodes`), the cross-node world
/// (units on several nodes, jumps between them through pair subjects; `xnode`), or that world
/// with two regions joined by a link (`xnode::regions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Worlds {
    /// Every world: odd seeds the stream, seeds 2 mod 8 the cross-node world, 6 mod 8 the
    /// cross-node world with two regions, the others (0 mod 4) the files.
    #[default]
    #[value(alias = "both")]
    All,
    Files,
    Stream,
    Xnode,
    /// The cross-node world with two regions (issue 20) in every seed.
    Regions,
}

impl Worlds {
    /// Whether seed `seed` runs the stream world.
    pub fn stream(self, seed: u64) -> bool {
        match self {
            Worlds::All => nodes::is_stream_seed(seed),
            Worlds::Files | Worlds::Xnode | Worlds::Regions => false,
            Worlds::Stream => true,
        }
    }

    /// Whether seed `seed` runs the cross-node world.
    pub fn xnode(self, seed: u64) -> bool {
        match self {
            Worlds::All => xnode::is_xnode_seed(seed),
            Worlds::Files | Worlds::Stream => false,
            Worlds::Xnode | Worlds::Regions => true,
        }
    }

    /// Whether seed `seed` runs the cross-node world with two regions.
    pub fn regions(self, seed: u64) -> bool {
        match self {
            Worlds::All => xnode::is_regions_seed(seed),
            Worlds::Files | Worlds::Stream | Worlds::Xnode => false,
            Worlds::Regions => true,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: 1_000,
            audit_every: 1,
            keep_trace: true,
            faults: scheduler::Faults::default(),
            worlds: Worlds::All,
        }
    }
}

/// What a seed's run came to.
#[derive(Debug)]
pub struct SeedRun {
    pub seed: u64,
    /// Hash of every log's bytes and of the trace.
    pub digest: u64,
    pub counts: Counts,
    pub failure: Option<Failure>,
    /// The trace, when kept (`--trace`).
    pub trace: Vec<String>,
}

/// A seed that failed: the violation, the step, and the story of the player concerned.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    pub step: u64,
    pub player: Option<String>,
    pub story: Vec<String>,
}

thread_local! {
    /// Set while this thread runs a seed: a panic then is the seed's failure, reported with
    /// its replay line, not a crash of the tool.
    static IN_SEED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that says nothing of panics inside a seed (the runner reports them as
/// the seed's failure) and leaves every other panic to the previous hook.
pub fn quiet_panics_in_seeds() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_SEED.with(|f| f.get()) {
            previous(info);
        }
    }));
}

/// Runs seed `seed`.
pub fn run_seed(seed: u64, opts: Options) -> SeedRun {
    if opts.worlds.xnode(seed) {
        IN_SEED.with(|f| f.set(true));
        let run = xnode::run_seed(seed, opts, opts.worlds.regions(seed));
        IN_SEED.with(|f| f.set(false));
        return run;
    }
    let mut w = World::new(seed, opts.keep_trace);
    IN_SEED.with(|f| f.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if opts.worlds.stream(seed) {
            w.counts.stream_seeds += 1;
            nodes::start(&mut w)?;
        }
        drive(&mut w, opts)
    }));
    IN_SEED.with(|f| f.set(false));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(failure_of(&w, v)),
        Err(payload) => Some(failure_of(&w, violation_of_panic(payload))),
    };
    let trace = if opts.keep_trace {
        w.trace
            .all()
            .iter()
            .map(|e| format!("{:>6} {}", e.step, e.text))
            .collect()
    } else {
        Vec::new()
    };
    SeedRun {
        seed,
        digest: digest(&w),
        counts: w.counts.clone(),
        failure,
        trace,
    }
}

/// The steps of a seed, then a crash, a restart, and the audit of what the disk holds.
fn drive(w: &mut World, opts: Options) -> Result<(), Violation> {
    while w.step < opts.steps || w.down.is_some() {
        w.step += 1;
        w.counts.steps += 1;
        let action = scheduler::pick(w, opts.faults);
        scheduler::run(w, action)?;
        if w.down.is_none() && (w.js.is_none() || !w.shards.is_empty()) {
            invariants::check_step(w)?;
        }
    }
    w.step += 1;
    if w.js.is_some() {
        nodes::final_takeover(w)?;
        nodes::epochs_in_order(w)?;
    } else {
        recovery::crash(w);
        w.step += 1;
        recovery::restart(w)?;
    }
    if opts.audit_every > 0 && w.seed.is_multiple_of(opts.audit_every) {
        w.counts.audits += 1;
        audit(w)?;
    }
    Ok(())
}

/// Where the audit's data directories go when it exists (a tmpfs on Linux).
const MEMORY_DIR: &str = "/dev/shm";

/// Writes the durable logs to a data directory, as the files would be named, and runs the
/// real auditor (`mltrader check`) on it: it must find no problem.
pub fn audit(w: &World) -> Result<(), Violation> {
    // In memory when the machine has a tmpfs: on a disk, creating and deleting the files
    // cost more than the rest of the seed.
    let dir = match std::path::Path::new(MEMORY_DIR).is_dir() {
        true => tempfile::tempdir_in(MEMORY_DIR),
        false => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let datadir = store::datadir::DataDir::at(dir.path());
    datadir.create().expect("the data directory's layout");
    let logs: Vec<(String, Vec<u8>)> = match &w.js {
        // The truth is the stream's, whatever the nodes hold.
        Some(_) => nodes::logs_for_audit(w),
        None => w
            .shards
            .values()
            .map(|s| (s.log.name.clone(), s.log.durable.clone()))
            .chain(std::iter::once((
                w.transitions.name.clone(),
                w.transitions.durable.clone(),
            )))
            .chain(w.closed.iter().map(|(n, b)| (n.clone(), b.clone())))
            .collect(),
    };
    let files = store::backend::FileLogs::new(&datadir);
    for (name, bytes) in logs {
        let path = files.path(&name);
        std::fs::write(&path, bytes).expect("writes a log");
    }
    let report = mesh::audit::audit(&datadir, &w.galaxy);
    if report.ok() {
        return Ok(());
    }
    Err(Violation {
        invariant: "audit",
        player: None,
        jump: None,
        what: format!("the auditor finds problems: {}", report.problems.join("; ")),
    })
}

pub(crate) fn violation_of_panic(payload: Box<dyn std::any::Any + Send>) -> Violation {
    if let Some(v) = payload.downcast_ref::<Violation>() {
        return v.clone();
    }
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into());
    Violation {
        invariant: "panic",
        player: None,
        jump: None,
        what: text,
    }
}

fn failure_of(w: &World, v: Violation) -> Failure {
    let line = |e: &trace::Entry| format!("{:>6} {}", e.step, e.text);
    let mut story: Vec<String> = match &v.player {
        Some(p) => w.trace.story(p).into_iter().map(line).collect(),
        None => Vec::new(),
    };
    // What happened last, whoever it was about (another player's jump may be the cause).
    story.push("  ... the last steps, whoever they touched:".into());
    story.extend(w.trace.last(trace::CONTEXT_LINES).into_iter().map(line));
    Failure {
        what: v.to_string(),
        step: w.step,
        player: v.player.clone(),
        story,
    }
}

/// Every log's bytes (durable and not) and the trace, hashed.
fn digest(w: &World) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if w.js.is_some() {
        nodes::digest_into(w, &mut h);
    }
    for s in w.shards.values() {
        h.update(s.log.name.as_bytes());
        h.update(&s.log.durable);
    }
    for (name, bytes) in &w.closed {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    h.update(&w.transitions.durable);
    h.update(&w.trace.digest().to_le_bytes());
    h.digest()
}
