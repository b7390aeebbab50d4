//! `mltrader export`: writes the familiar data directory from a JetStream galaxy, so that
//! `check`, `replay`, grep and `history` work on it unchanged: every log's messages in order
//! (`transitions.log`, `systems/<slug>.log`, byte for byte what the local mode writes), the
//! snapshots as files (`snapshots/<name>.<upto>.snap`, the newest two of each log), the
//! galaxy's `galaxy.toml` (kept in the snapshots' bucket by `serve --nats`), and the players'
//! logs (`players/`), projected from the system logs as a node does.
//!
//! Resumable: `DIR/export.state.json` records per log the last stream sequence exported and the
//! file's length then, written (atomically) only after those bytes are synced. A run starts by
//! cutting each log back to that length (what an interrupted run wrote after its last state),
//! so a crash anywhere never leaves a torn or doubled record. `--follow` goes on exporting what
//! arrives until Ctrl-C: a live backup.
//!
//! Each pass copies every log up to one stream sequence read at its start: a prefix of the one
//! stream that holds every log, so a state the galaxy passed through (as a crash would leave
//! it), however long the copy takes while nodes write.
//!
//! While exporting, it checks the writers' headers ([`nats::export::EpochCheck`]) and reports
//! the zombie messages accepted (exit status 1 if any).
//!
//! A spread galaxy's (issue 19) pair subjects, when the stream `MLT_JUMPS` exists, are written
//! as `jumps.log` after the logs of each pass ([`super::export_jumps`]). It publishes nothing (like a node, it
//! creates the logs' stream and the snapshots' bucket, empty, on a cluster that has none, and
//! purges snapshot chunks no object refers to once they are old: `NatsSnapshots::open`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};

use nats::export::EpochCheck;
use nats::snapshots::SNAPSHOTS_BUCKET;
use nats::{NatsLogs, NatsSnapshots};
use sim::galaxy::Galaxy;
use sim::instance::InstanceId;
use store::backend::{
    FileLogs, FileSnapshots, LogStore, SnapshotStore, Storage, Visit, SYSTEMS_PREFIX,
    TRANSITIONS_LOG,
};
use store::datadir::DataDir;
use store::disk::{remove_stale_tmp, sync_parent_dir, write_atomic};
use store::record::parse_line;
use store::snapshot::{self, SnapshotError, SnapshotMeta, SNAPSHOTS_KEPT};

use super::common::galaxy_for;
use super::export_jumps::{departed_number, export_jumps, JumpsInput, JumpsReport};
use nats::export::JumpsReader;

/// The export's state file, in the exported directory.
pub const STATE_FILE: &str = "export.state.json";

/// The payload fetched and written per step (then synced, then recorded), in bytes.
pub const BATCH_BYTES_DEFAULT: usize = 4 << 20;

/// How often `--follow` looks for new messages.
pub const FOLLOW_POLL_MS: u64 = 1_000;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// NATS server URLs, comma-separated (as for `serve --nats`).
    #[arg(long)]
    pub nats: String,
    /// The credentials file (`user = "..."`, `password = "..."`).
    #[arg(long)]
    pub creds: PathBuf,
    /// The monitoring URL of every server (comma-separated), for the safety check.
    #[arg(long)]
    pub nats_monitor: String,
    /// The directory to write (created if missing; an earlier export there is continued).
    #[arg(long)]
    pub data: PathBuf,
    /// Keep exporting new messages as they arrive, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// The galaxy file, for a galaxy whose nodes never kept theirs in JetStream.
    #[arg(long)]
    pub galaxy: Option<PathBuf>,
    /// Copies of each log in the cluster (as for `serve --nats-replicas`).
    #[arg(long, default_value_t = 3)]
    pub nats_replicas: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The region the servers named belong to (their JetStream domain), for a galaxy served
    /// in regions (`serve --region`): its own logs and pair subjects are exported.
    #[arg(long)]
    pub region: Option<String>,
    /// Export this region's copy of another region's streams instead (`mltrader region copy`,
    /// docs/REGIONS.md): read-only, without snapshots (the copy of the snapshots' object store
    /// is not read). Needs --region.
    #[arg(long, requires = "region")]
    pub copy_of: Option<String>,
    /// Bytes fetched, written and synced per step (smaller: more, shorter steps).
    #[arg(long, default_value_t = BATCH_BYTES_DEFAULT, hide = true)]
    pub batch_bytes: usize,
}

/// What was exported of one log, across runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogState {
    /// The stream sequence of the last message exported (0: none).
    pub stream_seq: u64,
    /// The file's length once those messages were written and synced.
    pub len_bytes: u64,
    pub messages: u64,
    pub records: u64,
    /// The sequence number of the log's last record exported.
    pub last_record: u64,
    /// Records whose lines in the players' logs are written (system logs only).
    pub projected: u64,
    /// The writers' epochs, checked so far.
    pub epochs: EpochCheck,
    /// The highest transfer number of a `depart` exported (system logs; 0: none): a spread
    /// galaxy's jumps are written to `jumps.log` only up to it ([`super::export_jumps`]).
    #[serde(default)]
    pub last_depart: u64,
    /// Whether `last_depart` covers every record exported (false in a state written before it
    /// existed: the exported file is read once to count them).
    #[serde(default)]
    pub departs_counted: bool,
}

/// The state file: every log's [`LogState`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExportState {
    pub logs: BTreeMap<String, LogState>,
}

/// What one run did, and the totals so far.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub data: String,
    /// Per log: the totals exported so far.
    pub logs: BTreeMap<String, LogState>,
    pub new_messages: u64,
    pub new_bytes: u64,
    /// Bytes an interrupted run had written after its last recorded state, cut at the start.
    pub cut_bytes: u64,
    pub snapshots_in_jetstream: u64,
    pub snapshots_written: u64,
    pub player_lines_added: u64,
    pub player_log_problems: Vec<String>,
    pub messages: u64,
    pub records: u64,
    pub bytes: u64,
    /// Lease records in the transition log: one per claim of the galaxy's lease.
    pub takeovers_seen: u64,
    pub no_epoch_header: u64,
    pub zombie_messages_accepted: u64,
    /// A spread galaxy's pair subjects as the last pass wrote them to `jumps.log` (None: the
    /// cluster has no stream `MLT_JUMPS`).
    pub jumps: Option<JumpsReport>,
    pub problems: Vec<String>,
}

/// The pair subjects' export across passes.
#[derive(Default)]
struct JumpsExport {
    reader: Option<JumpsReader>,
    /// What the last `jumps.log` was written from (the next pass skips the same).
    last: Option<JumpsInput>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let split = |list: &str| list.split(',').map(|s| s.trim().to_string()).collect();
    let config = nats::NatsConfig {
        urls: split(&args.nats),
        creds_file: args.creds.clone(),
        monitor_urls: split(&args.nats_monitor),
        node: "export".into(),
        safety: nats::Safety::Required,
    };
    let replicas = usize::try_from(args.nats_replicas)?;
    if let Some(region) = &args.region {
        nats::region::checked(region)?;
    }
    let conn = nats::Nats::connect_in_region(&config, args.region.as_deref())?;
    let logs = match &args.copy_of {
        Some(other) if Some(other) == args.region.as_ref() => {
            bail!("--copy-of {other}: that is this region (--region); export it without --copy-of")
        }
        Some(other) => NatsLogs::open_copy(&conn, other)?,
        None => NatsLogs::open(&conn, replicas)?,
    };
    let snapshots = NatsSnapshots::open(&conn, SNAPSHOTS_BUCKET, replicas)?;
    let datadir = DataDir::at(&args.data);
    datadir
        .create()
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let mut state = load_state(&datadir)?;
    let galaxy = export_galaxy(&snapshots, &datadir, args.galaxy.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        stop_on_ctrl_c(stop.clone())?;
    }
    let mut report = Report {
        data: args.data.display().to_string(),
        ..Default::default()
    };
    let mut jumps = JumpsExport::default();
    loop {
        let before = report.new_messages;
        export_pass(
            &args,
            &logs,
            &snapshots,
            &datadir,
            &galaxy,
            &mut state,
            &mut report,
            &stop,
        )?;
        export_pair_subjects(
            &args,
            &conn,
            &datadir,
            &galaxy,
            &state,
            &mut jumps,
            &mut report,
        )?;
        if !args.follow || stop.load(Ordering::SeqCst) {
            break;
        }
        if report.new_messages > before && !args.json {
            eprintln!(
                "following: {} new messages so far ({} zombie messages accepted); Ctrl-C to stop",
                report.new_messages, report.zombie_messages_accepted
            );
        }
        sleep_unless_stopped(&stop, Duration::from_millis(FOLLOW_POLL_MS));
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    totals(&state, &mut report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(
        if report.zombie_messages_accepted > 0 || !report.problems.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// One pass: the snapshots first (so that none is ahead of the logs written after it), then
/// every log to its current end, then the players' logs.
#[allow(clippy::too_many_arguments)]
fn export_pass(
    args: &ExportArgs,
    logs: &NatsLogs,
    snapshots: &NatsSnapshots,
    datadir: &DataDir,
    galaxy: &Galaxy,
    state: &mut ExportState,
    report: &mut Report,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    if args.copy_of.is_none() {
        export_snapshots(snapshots, datadir, report)?;
    }
    // Every log up to one stream sequence: a prefix of the stream, one state of the galaxy
    // (as a crash would leave it), whatever the nodes write while this pass reads.
    let upto = logs.last_sequence()?;
    let mut names = logs.list(TRANSITIONS_LOG)?;
    names.retain(|n| n == TRANSITIONS_LOG);
    names.extend(logs.list(SYSTEMS_PREFIX)?);
    for name in &names {
        export_log(args, logs, datadir, name, upto, state, report, stop)?;
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    create_empty_logs(datadir, galaxy)?;
    project_players(datadir, galaxy, state, report)?;
    save_state(datadir, state)?;
    Ok(())
}

/// After the logs of a pass: `jumps.log` from the pair subjects, when the stream `MLT_JUMPS`
/// exists (looked for at each pass until it does), up to the departs exported.
fn export_pair_subjects(
    args: &ExportArgs,
    conn: &nats::Nats,
    datadir: &DataDir,
    galaxy: &Galaxy,
    state: &ExportState,
    jumps: &mut JumpsExport,
    report: &mut Report,
) -> anyhow::Result<()> {
    if jumps.reader.is_none() {
        jumps.reader = match &args.copy_of {
            Some(other) => JumpsReader::open_copy(conn, other)?,
            None => JumpsReader::open(conn)?,
        };
    }
    let Some(reader) = &jumps.reader else {
        return Ok(());
    };
    let mut departed = BTreeMap::new();
    for (name, entry) in &state.logs {
        let Some(slug) = name.strip_prefix(SYSTEMS_PREFIX) else {
            continue;
        };
        let last_depart = if entry.departs_counted {
            entry.last_depart
        } else {
            // Not exported in this pass (it was stopped) since a state without the count.
            last_depart_in(&datadir.root().join(format!("{name}.log")), entry.len_bytes)?
        };
        if let (Some(at), true) = (InstanceId::parse(galaxy, slug), last_depart > 0) {
            departed.insert(at, last_depart);
        }
    }
    let written = export_jumps(
        reader,
        datadir,
        galaxy,
        departed,
        args.batch_bytes,
        jumps.last.as_ref(),
    )?;
    if let Some((jumps_report, input)) = written {
        if !args.json {
            eprintln!(
                "jumps: {} written to {} ({} fence marks, {} stored twice, {} after the logs' cut)",
                jumps_report.jumps,
                datadir.jumps_log().display(),
                jumps_report.fence_marks,
                jumps_report.duplicates,
                jumps_report.after_cut
            );
        }
        report.jumps = Some(jumps_report);
        jumps.last = Some(input);
    }
    Ok(())
}

/// Counts the `depart` records of the `len_bytes` first bytes of the exported log at `path`
/// (for a state written before departs were counted): the highest transfer number.
fn last_depart_in(path: &Path, len_bytes: u64) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = usize::try_from(len_bytes)?.min(bytes.len());
    let mut last = 0;
    for line in bytes[..len].split_inclusive(|b| *b == b'\n') {
        let record = parse_line(line)
            .with_context(|| format!("{}: a line that is not a record", path.display()))?;
        last = last.max(depart_of(&record));
    }
    Ok(last)
}

/// The transfer number of `record` if it is a `depart` (0 otherwise).
fn depart_of(record: &store::record::Record<'_>) -> u64 {
    if record.kind != "depart" {
        return 0;
    }
    record.get("xfer").and_then(departed_number).unwrap_or(0)
}

/// The logs every start of a local galaxy creates (the transition log and each system's), empty
/// where JetStream has no message for them: `check` expects them.
fn create_empty_logs(datadir: &DataDir, galaxy: &Galaxy) -> anyhow::Result<()> {
    let paths = galaxy
        .ids()
        .map(|id| datadir.system_log(galaxy.slug(id)))
        .chain([datadir.transitions_log()]);
    for path in paths {
        if !path.exists() {
            open_log_file(&path)?;
            sync_parent_dir(&path)?;
        }
    }
    Ok(())
}

/// Appends log `name`'s new messages to its file: cut back to the recorded length first, then
/// batch by batch up to stream sequence `upto`, each written, synced, and only then recorded in
/// the state file.
#[allow(clippy::too_many_arguments)]
fn export_log(
    args: &ExportArgs,
    logs: &NatsLogs,
    datadir: &DataDir,
    name: &str,
    upto: u64,
    state: &mut ExportState,
    report: &mut Report,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut entry = state.logs.get(name).cloned().unwrap_or_default();
    let path = datadir.root().join(format!("{name}.log"));
    let (mut file, created) = open_log_file(&path)?;
    let len = file.metadata()?.len();
    if len < entry.len_bytes {
        bail!(
            "{}: {len} bytes, shorter than the {} bytes {STATE_FILE} says were exported: the file was changed after the export; move {} away and export again",
            path.display(),
            entry.len_bytes,
            datadir.root().display()
        );
    }
    if len > entry.len_bytes {
        // Written by an interrupted run after its last recorded state: not trusted.
        file.set_len(entry.len_bytes)?;
        file.sync_all()?;
        report.cut_bytes += len - entry.len_bytes;
    }
    file.seek(SeekFrom::Start(entry.len_bytes))?;
    if created {
        sync_parent_dir(&path)?;
    }
    if !entry.departs_counted {
        if entry.len_bytes > 0 && name.starts_with(SYSTEMS_PREFIX) {
            entry.last_depart = last_depart_in(&path, entry.len_bytes)?;
        }
        entry.departs_counted = true;
        state.logs.insert(name.to_string(), entry.clone());
    }
    loop {
        let batch = logs.messages_after(name, entry.stream_seq, upto, args.batch_bytes.max(1))?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for m in &batch {
            assert!(
                m.stream_seq > entry.stream_seq,
                "{name}: messages come in order"
            );
            for line in m.payload.split_inclusive(|b| *b == b'\n') {
                let record = parse_line(line).with_context(|| {
                    format!(
                        "{name}: message {} holds a line that is not a record",
                        m.stream_seq
                    )
                })?;
                if entry.last_record != 0 && record.seq != entry.last_record + 1 {
                    bail!(
                        "{name}: message {} holds record {} after record {}: the log has a gap or a repeat; nothing of it was written",
                        m.stream_seq,
                        record.seq,
                        entry.last_record
                    );
                }
                entry.last_record = record.seq;
                entry.records += 1;
                entry.last_depart = entry.last_depart.max(depart_of(&record));
            }
            entry.epochs.message(name, m);
            entry.stream_seq = m.stream_seq;
            entry.messages += 1;
            bytes.extend_from_slice(&m.payload);
        }
        file.write_all(&bytes)?;
        file.sync_data()?;
        entry.len_bytes += bytes.len() as u64;
        state.logs.insert(name.to_string(), entry.clone());
        save_state(datadir, state)?;
        report.new_messages += batch.len() as u64;
        report.new_bytes += bytes.len() as u64;
        if !args.json {
            eprintln!(
                "{name}: {} messages, {} records, {} bytes",
                entry.messages, entry.records, entry.len_bytes
            );
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

fn open_log_file(path: &Path) -> anyhow::Result<(File, bool)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let created = !path.exists();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok((file, created))
}

/// Writes the snapshots JetStream has that the directory lacks, then keeps the newest
/// [`SNAPSHOTS_KEPT`] of each log, as the local mode does.
fn export_snapshots(
    snapshots: &NatsSnapshots,
    datadir: &DataDir,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = datadir.snapshots_dir();
    let all = snapshots.all()?;
    report.snapshots_in_jetstream = all.len() as u64;
    let mut names: Vec<&str> = Vec::new();
    for (name, upto) in &all {
        let path = snapshot::path_of(&dir, name, *upto);
        if !path.exists() {
            let bytes = snapshots.bytes_of(name, *upto)?;
            write_atomic(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            report.snapshots_written += 1;
        }
        if names.last() != Some(&name.as_str()) {
            names.push(name);
        }
    }
    for name in names {
        snapshot::prune(&dir, name, SNAPSHOTS_KEPT)?;
    }
    Ok(())
}

/// The players' logs: each system log's records about players, as lines of their logs
/// (`mesh::projector`), appended where missing. A log is replayed from its newest snapshot
/// whose lines are already written (none on the first run: from its start). The logs are read
/// one after the other while nodes write: a player's next event may be in a log read before it
/// was written, so a player's lines can have a gap in one pass. Then nothing is marked as
/// projected, and the next pass replays the same records again (appending is idempotent: only
/// versions a player's log lacks are added).
fn project_players(
    datadir: &DataDir,
    galaxy: &Galaxy,
    state: &mut ExportState,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    let mut marks = Vec::new();
    for (name, entry) in &state.logs {
        let Some(slug) = name.strip_prefix(SYSTEMS_PREFIX) else {
            continue;
        };
        if entry.projected == entry.last_record {
            continue;
        }
        let Some(id) = InstanceId::parse(galaxy, slug) else {
            bail!(
                "{name}: no such system or instance in the galaxy ({})",
                datadir.galaxy_file().display()
            );
        };
        let storage = Storage {
            logs: Arc::new(FileLogs::new(datadir)),
            snapshots: Arc::new(SnapshotsUpTo {
                files: FileSnapshots::new(datadir),
                max_upto: entry.projected,
            }),
        };
        let recovered = match mesh::recovery::recover_system(&storage, galaxy, id) {
            Ok(recovered) => recovered,
            Err(e) => {
                // The log is exported as it is; its players' lines wait for a log that replays.
                let problem = format!("{name}: cannot replay it to write the players' logs: {e}");
                if !report.problems.contains(&problem) {
                    report.problems.push(problem);
                }
                continue;
            }
        };
        recovered.log.close()?;
        lines.extend(recovered.projections);
        marks.push((name.clone(), entry.last_record));
    }
    let caught = mesh::projector::catch_up(datadir, lines);
    report.player_lines_added += caught.lines_added;
    if caught.problems.is_empty() {
        for (name, last_record) in marks {
            if let Some(entry) = state.logs.get_mut(&name) {
                entry.projected = last_record;
            }
        }
    }
    report.player_log_problems = caught.problems;
    Ok(())
}

/// A data directory's snapshots, but only those up to record `max_upto` (whose players' lines
/// are written): the replay that projects the players' logs starts from one of them.
struct SnapshotsUpTo {
    files: FileSnapshots,
    max_upto: u64,
}

impl SnapshotStore for SnapshotsUpTo {
    fn put(&self, meta: &SnapshotMeta, _bytes: &[u8]) -> Result<(), SnapshotError> {
        unreachable!("the export never snapshots ({})", meta.name)
    }

    fn list(&self, name: &str) -> Result<Vec<u64>, SnapshotError> {
        let mut all = self.files.list(name)?;
        all.retain(|upto| *upto <= self.max_upto);
        Ok(all)
    }

    fn get(&self, name: &str, upto: u64, visit: Visit<'_>) -> Result<SnapshotMeta, SnapshotError> {
        assert!(upto <= self.max_upto, "only listed snapshots are read");
        self.files.get(name, upto, visit)
    }

    fn keep_newest(&self, _name: &str, _keep: usize) -> Result<(), SnapshotError> {
        Ok(())
    }

    fn describe(&self, name: &str, upto: u64) -> String {
        self.files.describe(name, upto)
    }
}

/// Writes the galaxy JetStream keeps (or `--galaxy`) as `galaxy.toml`, refusing a directory
/// that holds another one.
fn export_galaxy(
    snapshots: &NatsSnapshots,
    datadir: &DataDir,
    asked: Option<&Path>,
) -> anyhow::Result<Galaxy> {
    let kept = match snapshots.galaxy()? {
        Some(bytes) => bytes,
        None => match asked {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("cannot read galaxy file {}", path.display()))?,
            None => bail!(
                "JetStream keeps no galaxy.toml (bucket {SNAPSHOTS_BUCKET}: the galaxy was started before nodes kept it there): pass --galaxy FILE, the nodes' galaxy.toml"
            ),
        },
    };
    let path = datadir.galaxy_file();
    match std::fs::read(&path) {
        Ok(existing) if existing == kept => {}
        Ok(_) => bail!(
            "{} holds another galaxy than the one in JetStream: export into a new directory",
            path.display()
        ),
        Err(_) => write_atomic(&path, &kept)
            .with_context(|| format!("cannot write {}", path.display()))?,
    }
    galaxy_for(datadir, None, false)
}

/// Refuses a directory that holds a galaxy's files but no export state: a local galaxy's data
/// directory or a node's, whose logs a first export would cut to nothing.
fn refuse_foreign_directory(datadir: &DataDir) -> anyhow::Result<()> {
    let non_empty = |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let any_in = |dir: PathBuf| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".log") && non_empty(&e.path()))
        })
    };
    let foreign = datadir.root().join("LOCK").exists()
        || non_empty(&datadir.transitions_log())
        || any_in(datadir.systems_dir())
        || any_in(datadir.players_dir());
    if foreign {
        bail!(
            "{} holds a galaxy's files but no {STATE_FILE}: it is a data directory, not an export; export into a new directory",
            datadir.root().display()
        );
    }
    Ok(())
}

fn load_state(datadir: &DataDir) -> anyhow::Result<ExportState> {
    let path = datadir.root().join(STATE_FILE);
    if !path.exists() {
        refuse_foreign_directory(datadir)?;
    }
    // A killed export may have left the temporary files of its last atomic writes.
    for dir in [datadir.root().to_path_buf(), datadir.snapshots_dir()] {
        remove_stale_tmp(&dir).with_context(|| format!("cannot clean {}", dir.display()))?;
    }
    let state = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: not an export state; move the directory away and export again",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ExportState::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(state)
}

fn save_state(datadir: &DataDir, state: &ExportState) -> anyhow::Result<()> {
    let path = datadir.root().join(STATE_FILE);
    write_atomic(&path, &serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn totals(state: &ExportState, report: &mut Report) {
    report.logs = state.logs.clone();
    for (name, entry) in &state.logs {
        report.messages += entry.messages;
        report.records += entry.records;
        report.bytes += entry.len_bytes;
        report.no_epoch_header += entry.epochs.no_epoch_header;
        report.zombie_messages_accepted += entry.epochs.zombie_messages;
        report
            .problems
            .extend(entry.epochs.problems.iter().cloned());
        if name == TRANSITIONS_LOG {
            report.takeovers_seen = entry.epochs.lease_records;
        }
    }
    if let Some(jumps) = &report.jumps {
        report.zombie_messages_accepted += jumps.zombie_messages;
        report.problems.extend(jumps.problems.iter().cloned());
        let unlisted = jumps
            .problem_count
            .saturating_sub(jumps.problems.len() as u64);
        if unlisted > 0 {
            report.problems.push(format!(
                "jumps.log: {unlisted} more problems on the pair subjects"
            ));
        }
    }
}

fn print_report(r: &Report) {
    println!("exported to {}:", r.data);
    for (name, e) in &r.logs {
        println!(
            "  {name}: {} messages, {} records, {} bytes; lease records {}, no epoch header {}, zombie messages {}",
            e.messages, e.records, e.len_bytes, e.epochs.lease_records, e.epochs.no_epoch_header, e.epochs.zombie_messages
        );
    }
    println!(
        "this run: {} new messages, {} new bytes{}; snapshots: {} in JetStream, {} written; players' logs: {} lines added",
        r.new_messages,
        r.new_bytes,
        if r.cut_bytes > 0 {
            format!(" ({} bytes of an interrupted run cut first)", r.cut_bytes)
        } else {
            String::new()
        },
        r.snapshots_in_jetstream,
        r.snapshots_written,
        r.player_lines_added
    );
    for p in &r.player_log_problems {
        println!("players' logs: {p} (a node was writing; run the export again to complete them)");
    }
    println!(
        "total: {} messages, {} records, {} bytes; takeovers seen: {}; no epoch header: {}",
        r.messages, r.records, r.bytes, r.takeovers_seen, r.no_epoch_header
    );
    match &r.jumps {
        Some(j) => println!(
            "jumps.log: {} jumps from {} messages of {} pair subjects (stream MLT_JUMPS up to {}); \
             fence marks {}, stored twice {} (written once), published after the logs' cut {} \
             (left for the next pass), zombie messages {}",
            j.jumps,
            j.messages,
            j.subjects.len(),
            j.stream_seq,
            j.fence_marks,
            j.duplicates,
            j.after_cut,
            j.zombie_messages
        ),
        None => println!("jumps.log: none (no stream MLT_JUMPS: not a spread galaxy)"),
    }
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!("zombie messages accepted: {}", r.zombie_messages_accepted);
}

/// Sets `stop` on Ctrl-C (SIGINT) or SIGTERM.
fn stop_on_ctrl_c(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler installs");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            stop.store(true, Ordering::SeqCst);
        })?;
    Ok(())
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}
