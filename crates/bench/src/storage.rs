//! `mltrader-bench storage`: figures for the log layer (issue "Durable, greppable logs").
//!
//! In one run, on files in a fresh directory that is removed at the end, it measures:
//!
//! 1. **The raw floor**: a 100-byte `write` + `fdatasync` on a plain appended `std::fs::File`
//!    (ops/s, p50/p99 latency), and 1 MB `write` + `fdatasync` throughput (MB/s, and the same
//!    bytes counted as 100-byte records/s). Then the same 100-byte syncs from 1, 4 and 37
//!    threads with a file each ([`many_files`]): what the disk gives the mesh's 37 logs.
//! 2. **Durable appends through [`Log`]** with 1, 16 and 256 concurrent writers. Each writer
//!    appends one record of about 100 bytes, waits until it is durable, notes the
//!    acknowledgement latency and repeats. One writer is a plain thread using
//!    [`Log::wait_durable`], measured in slices that alternate with the raw floor's so that
//!    drift in the disk's speed hits both alike (and, as an extra, one tokio task); 16 and 256
//!    writers are tokio tasks on the default multi-thread runtime using [`Log::durable`].
//!    Reported: records/s, p50/p99 ack latency, records per fsync (from [`Log::sync_stats`]),
//!    and the process's CPU time per record. Clearly labelled extras show where the limit
//!    lies: writers that append batches of 16 records per wait ([`Log::append_batch`]), and
//!    256 writers over a file that keeps nothing (the Log's and the runtime's own CPU ceiling;
//!    not durable).
//! 3. **Single-writer p99 ack over raw fdatasync p99** of the same run.
//! 4. **Replay** of a dedicated log (300k records for `small`, 2M for `large`): read into
//!    memory (timed apart), then [`scan`] (which checks and parses every line with
//!    `parse_line`) on one thread; and the same file through [`Log::open`] with a visitor
//!    that reads `player`.
//!
//! Each figure is printed next to its target and marked met or not met, with the machine's
//! core count and load average (other processes on the machine move the CPU-bound figures).
//! It never asserts: it prints what it measured and exits 0 unless the disk itself fails.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::many_files::{self, ManyFiles};
use super::{int, load_average, percentile, Size};
use store::disk::AppendFile;
use store::log::{Log, LogError};
use store::record::Line;
use store::scan::{scan, ScanStart};
use store::seq::Seq;

#[derive(Args, Debug)]
pub struct StorageArgs {
    /// Run size: `small` takes about 10 s (CI), `large` about 1-2 min for stable figures.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Directory to put the benchmark's files in (a fresh subdirectory is made there and
    /// removed at the end). Default: under ./target if it exists, else the system temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Targets from the issue.
const TARGET_256_RECORDS_PER_S: f64 = 1_000_000.0;
const TARGET_P99_RATIO: f64 = 3.0;
const TARGET_REPLAY_RECORDS_PER_S: f64 = 2_000_000.0;

/// The record kind the benchmark writes.
const KIND: &str = "bench";
/// Padding that brings a record to about 100 bytes once encoded (printed: the mean size).
const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxx";
/// Files syncing at once in the many-files runs: one, a few, and as many as the mesh of the
/// default galaxy has logs (36 systems and the transition log).
const MANY_FILES: [usize; 3] = [1, 4, 37];

/// Records in one `append_batch` call in the batched variant.
const BATCH: usize = 16;

/// How long each step runs, by size.
struct Plan {
    /// Alternating slices of raw fdatasync and single-writer Log appends.
    rounds: usize,
    slice: Duration,
    mb_time: Duration,
    warmup: Duration,
    measure: Duration,
    replay_records: u64,
    replay_reps: usize,
    /// How long each many-files run lasts.
    many_files: Duration,
}

impl Plan {
    fn for_size(size: Size) -> Plan {
        match size {
            Size::Small => Plan {
                rounds: 5,
                slice: Duration::from_millis(250),
                mb_time: Duration::from_millis(500),
                warmup: Duration::from_millis(250),
                measure: Duration::from_millis(1000),
                replay_records: 300_000,
                replay_reps: 3,
                many_files: Duration::from_millis(1000),
            },
            Size::Large => Plan {
                rounds: 10,
                slice: Duration::from_millis(600),
                mb_time: Duration::from_secs(3),
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(8),
                replay_records: 2_000_000,
                replay_reps: 5,
                many_files: Duration::from_secs(4),
            },
        }
    }
}

/// The benchmark's own directory; removed when dropped (also on an error).
struct BenchDir {
    path: PathBuf,
}

impl BenchDir {
    fn create(parent: Option<&Path>) -> anyhow::Result<BenchDir> {
        Ok(BenchDir {
            path: super::scratch_dir(parent, "storage")?,
        })
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Sorted latencies in microseconds, from nanoseconds.
pub(super) fn sorted_us(ns: impl IntoIterator<Item = u64>) -> Vec<f64> {
    let mut v: Vec<f64> = ns.into_iter().map(|n| n as f64 / 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// CPU time used so far by this process's live threads, in ns (Linux: the sum of
/// `/proc/self/task/*/schedstat`); None where that is not available.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn progress(msg: &str) {
    eprintln!("storage: {msg}");
}

pub fn run(args: StorageArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::for_size(args.size);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let dir = BenchDir::create(args.dir.as_deref())?;
    let started = Instant::now();
    let load_start = load_average();
    progress(&format!(
        "size {}, {cores} cores, files in {}",
        size_name(args.size),
        dir.path.display()
    ));

    let (raw, single) = raw_and_single_writer(&dir.path, &plan)?;
    let mut many = Vec::new();
    for files in MANY_FILES {
        progress(&format!(
            "raw floor with {files} files syncing at once, {:.1} s",
            plan.many_files.as_secs_f64()
        ));
        many.push(many_files::measure(&dir.path, files, plan.many_files)?);
    }
    let mut writers = vec![single];
    writers.extend(durable_writers(&dir.path, &plan)?);
    let replay = replay(&dir.path, &plan)?;
    let total_s = started.elapsed().as_secs_f64();
    let load_end = load_average();

    let report = Report {
        size: args.size,
        cores,
        dir: dir.path.display().to_string(),
        raw,
        many,
        rounds: plan.rounds,
        writers,
        replay,
        total_s,
        load: (load_start, load_end),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print();
    }
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// 1. The raw floor.

struct Raw {
    ops: usize,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    mb_ops: usize,
    mb_seconds: f64,
}

impl Raw {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    fn mb_per_s(&self) -> f64 {
        self.mb_ops as f64 * MB as f64 / 1e6 / self.mb_seconds
    }
    fn mb_records_per_s(&self) -> f64 {
        self.mb_ops as f64 * MB as f64 / 100.0 / self.mb_seconds
    }
}

/// 1 MB (10^6 bytes): the large raw write.
const MB: usize = 1_000_000;

/// Steps 1 and 3: 100-byte write+fdatasync on a plain file, and one writer through the Log (a
/// plain thread, this one, in `wait_durable`), measured in alternating slices so that drift in
/// the disk's speed hits both alike. Then the 1 MB write+fdatasync throughput.
fn raw_and_single_writer(dir: &Path, plan: &Plan) -> anyhow::Result<(Raw, WriterResult)> {
    progress(&format!(
        "raw floor (100-byte write+fdatasync) and 1 writer through Log (thread, wait_durable), \
         {} alternating slices of {:.2} s each",
        plan.rounds,
        plan.slice.as_secs_f64()
    ));
    let path = dir.join("raw.dat");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let log_path = dir.join("w1_thread.log");
    let (log, _) = Log::open(&log_path, ScanStart::BEGINNING, |_| Ok(()))?;
    let player = player_name(0);
    let mut n = 0u64;
    let mut rec = [b'x'; 100];
    rec[99] = b'\n';
    for _ in 0..20 {
        f.write_all(&rec)?;
        f.sync_data()?;
        let seq = append_some(&log, &player, &mut n, 1)?;
        log.wait_durable(seq)?;
    }

    let mut raw_lats = Vec::new();
    let mut raw_seconds = 0.0;
    let mut log_lats = Vec::new();
    let mut log_seconds = 0.0;
    let mut log_cpu_ns = Some(0u64);
    let (bytes0, syncs0) = log.sync_stats();
    let durable0 = log.durable_seq();
    for _ in 0..plan.rounds {
        let start = Instant::now();
        while start.elapsed() < plan.slice {
            let t = Instant::now();
            f.write_all(&rec)?;
            f.sync_data()?;
            raw_lats.push(t.elapsed().as_nanos() as u64);
        }
        raw_seconds += start.elapsed().as_secs_f64();
        let cpu0 = process_cpu_ns();
        let start = Instant::now();
        while start.elapsed() < plan.slice {
            let t = Instant::now();
            let seq = append_some(&log, &player, &mut n, 1)?;
            log.wait_durable(seq)?;
            log_lats.push(t.elapsed().as_nanos() as u64);
        }
        log_seconds += start.elapsed().as_secs_f64();
        log_cpu_ns = match (log_cpu_ns, cpu0, process_cpu_ns()) {
            (Some(sum), Some(a), Some(b)) => Some(sum + b.saturating_sub(a)),
            _ => None,
        };
    }
    let (bytes1, syncs1) = log.sync_stats();
    let durable1 = log.durable_seq();
    log.close()?;
    drop(f);
    std::fs::remove_file(&path)?;
    std::fs::remove_file(&log_path)?;
    let ops = raw_lats.len();
    let lat = sorted_us(raw_lats);
    let records = log_lats.len() as u64;
    let log_lat = sorted_us(log_lats);
    let single = WriterResult {
        key: "w1_thread",
        disk: true,
        writers: 1,
        batch: 1,
        how: "plain thread, append + wait_durable (*)".to_string(),
        records,
        seconds: log_seconds,
        p50_us: percentile(&log_lat, 50.0),
        p99_us: percentile(&log_lat, 99.0),
        p999_us: percentile(&log_lat, 99.9),
        durable_records: durable1.records_since(durable0),
        fsyncs: syncs1 - syncs0,
        synced_bytes: bytes1 - bytes0,
        cpu_ns: log_cpu_ns,
    };

    progress(&format!(
        "raw floor: 1 MB write+fdatasync for {:.1} s",
        plan.mb_time.as_secs_f64()
    ));
    let path = dir.join("raw-mb.dat");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let big = vec![b'y'; MB];
    f.write_all(&big)?;
    f.sync_data()?;
    let mut mb_ops = 0;
    let start = Instant::now();
    while start.elapsed() < plan.mb_time || mb_ops < 3 {
        f.write_all(&big)?;
        f.sync_data()?;
        mb_ops += 1;
    }
    let mb_seconds = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let raw = Raw {
        ops,
        seconds: raw_seconds,
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        p999_us: percentile(&lat, 99.9),
        mb_ops,
        mb_seconds,
    };
    Ok((raw, single))
}

// ---------------------------------------------------------------------------------------------
// 2. Durable appends through the Log.

/// A run of tokio tasks on the default multi-thread runtime, each looping: append, await
/// `durable(seq)`, note the latency.
struct Variant {
    key: &'static str,
    writers: usize,
    /// Records appended per wait (1: `append`; more: `append_batch`).
    batch: usize,
    /// False: a diagnostic run over [`NullFile`] (no disk at all: not durable).
    disk: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        key: "w1_async",
        writers: 1,
        batch: 1,
        disk: true,
    },
    Variant {
        key: "w16_async",
        writers: 16,
        batch: 1,
        disk: true,
    },
    Variant {
        key: "w256_async",
        writers: 256,
        batch: 1,
        disk: true,
    },
    Variant {
        key: "w16_async_batch16",
        writers: 16,
        batch: BATCH,
        disk: true,
    },
    Variant {
        key: "w256_async_batch16",
        writers: 256,
        batch: BATCH,
        disk: true,
    },
    Variant {
        key: "w256_async_nodisk",
        writers: 256,
        batch: 1,
        disk: false,
    },
];

/// A file that keeps nothing: appends and syncs return at once. Only for the diagnostic
/// variant that shows what the Log and the runtime cost without a disk (nothing is durable).
struct NullFile;

impl AppendFile for NullFile {
    fn append(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn truncate(&mut self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
}

impl Variant {
    fn how(&self) -> String {
        if !self.disk {
            return "tokio tasks, NO DISK (sync is a no-op)".to_string();
        }
        if self.batch > 1 {
            format!(
                "tokio tasks, append_batch({}) + durable().await",
                self.batch
            )
        } else if self.writers == 1 {
            "tokio task, append + durable().await".to_string()
        } else {
            "tokio tasks, append + durable().await".to_string()
        }
    }
}

struct WriterResult {
    key: &'static str,
    disk: bool,
    writers: usize,
    batch: usize,
    how: String,
    /// Records acknowledged in the measured window.
    records: u64,
    seconds: f64,
    /// Acknowledgement latency (per `append`/`append_batch` call), µs.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// Durable records and fsyncs over the window, from `durable_seq` and `sync_stats`.
    durable_records: u64,
    fsyncs: u64,
    synced_bytes: u64,
    /// CPU time the whole process used over the window (all threads), if known.
    cpu_ns: Option<u64>,
}

impl WriterResult {
    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn records_per_fsync(&self) -> f64 {
        self.durable_records as f64 / self.fsyncs.max(1) as f64
    }
    fn fsyncs_per_s(&self) -> f64 {
        self.fsyncs as f64 / self.seconds
    }
    fn mean_record_bytes(&self) -> f64 {
        self.synced_bytes as f64 / self.durable_records.max(1) as f64
    }
    /// Process CPU µs per acknowledged record (all threads: writers, committer, runtime).
    fn cpu_us_per_record(&self) -> Option<f64> {
        self.cpu_ns
            .map(|ns| ns as f64 / 1000.0 / self.records.max(1) as f64)
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Writes one benchmark record's fields (about 100 bytes in all with seq, kind and checksum).
fn encode(line: &mut Line<'_>, player: &str, n: u64) {
    line.field("player", player)
        .num("n", n)
        .num("credits", 1_000_000 + n % 1000)
        .field("pad", PAD);
}

fn player_name(i: usize) -> String {
    format!("pilot-{i:04}")
}

/// One writer's loop body: appends `batch` records (one call) and returns the last sequence.
fn append_some(log: &Log, player: &str, n: &mut u64, batch: usize) -> Result<Seq, LogError> {
    if batch == 1 {
        let seq = log.append(KIND, |l| encode(l, player, *n))?;
        *n += 1;
        Ok(seq)
    } else {
        let items: [u64; BATCH] = std::array::from_fn(|i| *n + i as u64);
        let items = &items[..batch.min(BATCH)];
        let last = log.append_batch(items, |_| KIND, |&i, l| encode(l, player, i))?;
        *n += items.len() as u64;
        Ok(last.expect("batch is not empty"))
    }
}

fn durable_writers(dir: &Path, plan: &Plan) -> anyhow::Result<Vec<WriterResult>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut out = Vec::new();
    for v in VARIANTS {
        progress(&format!(
            "appends through Log: {} writer(s), {} ({:.1} s + {:.1} s warm-up)",
            v.writers,
            v.how(),
            plan.measure.as_secs_f64(),
            plan.warmup.as_secs_f64()
        ));
        let path = dir.join(format!("{}.log", v.key));
        let log = if v.disk {
            Log::open(&path, ScanStart::BEGINNING, |_| Ok(()))?.0
        } else {
            Log::with_file(v.key.to_string(), Box::new(NullFile), 1)
        };
        let phase = Arc::new(AtomicU8::new(WARMUP));

        let mut handles = Vec::with_capacity(v.writers);
        for w in 0..v.writers {
            let log = log.clone();
            let phase = phase.clone();
            let player = player_name(w);
            let batch = v.batch;
            handles.push(rt.spawn(async move {
                let mut lats = Vec::with_capacity(1024);
                let mut n = 0u64;
                loop {
                    let ph = phase.load(Ordering::Relaxed);
                    if ph == STOP {
                        return Ok::<_, LogError>(lats);
                    }
                    let t = Instant::now();
                    let seq = append_some(&log, &player, &mut n, batch)?;
                    log.durable(seq).await?;
                    if ph == MEASURE {
                        lats.push(t.elapsed().as_nanos() as u64);
                    }
                }
            }));
        }

        std::thread::sleep(plan.warmup);
        let (bytes0, syncs0) = log.sync_stats();
        let durable0 = log.durable_seq();
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        phase.store(MEASURE, Ordering::Relaxed);
        std::thread::sleep(plan.measure);
        phase.store(STOP, Ordering::Relaxed);
        let seconds = t0.elapsed().as_secs_f64();
        let cpu1 = process_cpu_ns();
        let (bytes1, syncs1) = log.sync_stats();
        let durable1 = log.durable_seq();

        let mut all = Vec::new();
        for h in handles {
            let lats: Vec<u64> = rt.block_on(h).context("a writer task failed")??;
            all.extend(lats);
        }
        log.close()?;
        if v.disk {
            std::fs::remove_file(&path)?;
        }
        let calls = all.len() as u64;
        let lat = sorted_us(all);
        let r = WriterResult {
            key: v.key,
            disk: v.disk,
            writers: v.writers,
            batch: v.batch,
            how: v.how(),
            records: calls * v.batch as u64,
            seconds,
            p50_us: percentile(&lat, 50.0),
            p99_us: percentile(&lat, 99.0),
            p999_us: percentile(&lat, 99.9),
            durable_records: durable1.records_since(durable0),
            fsyncs: syncs1 - syncs0,
            synced_bytes: bytes1 - bytes0,
            cpu_ns: cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
        };
        progress(&format!(
            "  {} records/s, p99 {:.0} µs, {:.1} records/fsync",
            int(r.records_per_s()),
            r.p99_us,
            r.records_per_fsync()
        ));
        out.push(r);
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 4. Replay.

struct Replay {
    records: u64,
    file_bytes: u64,
    /// One thread appending every record without waiting, then one wait at the end.
    gen_seconds: f64,
    read_seconds: f64,
    /// Median of the repetitions of the scan from memory.
    scan_seconds: f64,
    /// The fastest repetition.
    scan_best_seconds: f64,
    scan_reps: usize,
    /// `Log::open` (reads the file itself) with a visitor reading `player`.
    open_seconds: f64,
    open_players: u64,
}

impl Replay {
    fn scan_records_per_s(&self) -> f64 {
        self.records as f64 / self.scan_seconds
    }
}

fn replay(dir: &Path, plan: &Plan) -> anyhow::Result<Replay> {
    let path = dir.join("replay.log");
    progress(&format!(
        "replay: writing {} records (1 thread, no per-record wait)",
        int(plan.replay_records as f64)
    ));
    let (log, _) = Log::open(&path, ScanStart::BEGINNING, |_| Ok(()))?;
    let players: Vec<String> = (0..1000).map(player_name).collect();
    let t = Instant::now();
    let mut last = Seq(0);
    for n in 0..plan.replay_records {
        let player = &players[(n % 1000) as usize];
        last = log.append(KIND, |l| encode(l, player, n))?;
    }
    log.wait_durable(last)?;
    let gen_seconds = t.elapsed().as_secs_f64();
    log.close()?;

    progress("replay: reading the file, then scanning it from memory on one thread");
    let t = Instant::now();
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let read_seconds = t.elapsed().as_secs_f64();

    let mut times = Vec::with_capacity(plan.replay_reps);
    let mut records = 0;
    for _ in 0..plan.replay_reps {
        let mut seen = 0u64;
        let t = Instant::now();
        let outcome = scan(&bytes, ScanStart::BEGINNING, |rec| {
            seen += 1;
            std::hint::black_box(rec);
            Ok(())
        })?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(seen);
        records = outcome.records;
    }
    times.sort_by(f64::total_cmp);
    let scan_seconds = percentile(&times, 50.0);
    let scan_best_seconds = times.first().copied().unwrap_or(f64::NAN);

    progress("replay: Log::open with a visitor reading `player`");
    let mut open_players = 0u64;
    let t = Instant::now();
    let (log, opened) = Log::open(&path, ScanStart::BEGINNING, |rec| {
        if let Some(p) = rec.get("player") {
            open_players += 1;
            std::hint::black_box(p);
        }
        Ok(())
    })?;
    let open_seconds = t.elapsed().as_secs_f64();
    log.close()?;
    if opened.scan.records != records {
        eprintln!(
            "warning: Log::open read {} records, the scan {records}",
            opened.scan.records
        );
    }
    let file_bytes = bytes.len() as u64;
    drop(bytes);
    std::fs::remove_file(&path)?;
    Ok(Replay {
        records,
        file_bytes,
        gen_seconds,
        read_seconds,
        scan_seconds,
        scan_best_seconds,
        scan_reps: plan.replay_reps,
        open_seconds,
        open_players,
    })
}

// ---------------------------------------------------------------------------------------------
// Output.

struct Report {
    size: Size,
    cores: usize,
    dir: String,
    raw: Raw,
    /// The raw floor with several files syncing at once.
    many: Vec<ManyFiles>,
    /// Slices of raw fdatasync alternating with the single-writer Log.
    rounds: usize,
    writers: Vec<WriterResult>,
    replay: Replay,
    total_s: f64,
    /// 1-minute load average at the start and the end.
    load: (Option<f64>, Option<f64>),
}

fn size_name(size: Size) -> &'static str {
    match size {
        Size::Small => "small",
        Size::Large => "large",
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

impl Report {
    fn writer(&self, key: &str) -> Option<&WriterResult> {
        self.writers.iter().find(|w| w.key == key)
    }

    fn mean_record_bytes(&self) -> f64 {
        let bytes: u64 = self.writers.iter().map(|w| w.synced_bytes).sum();
        let records: u64 = self.writers.iter().map(|w| w.durable_records).sum();
        bytes as f64 / records.max(1) as f64
    }

    fn w256_records_per_s(&self) -> f64 {
        self.writer("w256_async").map_or(0.0, |w| w.records_per_s())
    }

    fn p99_ratio(&self) -> f64 {
        self.writer("w1_thread")
            .map_or(f64::NAN, |w| w.p99_us / self.raw.p99_us)
    }

    fn replay_bytes_per_record(&self) -> f64 {
        self.replay.file_bytes as f64 / self.replay.records.max(1) as f64
    }

    fn print(&self) {
        let raw = &self.raw;
        let rp = &self.replay;
        let load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
        println!(
            "mltrader-bench storage: size {}, {} cores (load average {} at start, {} at end), \
             files in {} ({:.1} s in all)",
            size_name(self.size),
            self.cores,
            load(self.load.0),
            load(self.load.1),
            self.dir,
            self.total_s
        );
        println!();
        println!(
            "1. raw floor: plain std::fs::File opened for append, write + sync_data (100-byte ops \
             alternate with the 1-writer Log row (*) below, in {} slices each)",
            self.rounds
        );
        println!(
            "   100-byte write+fdatasync  {:>9} ops  {:>10} ops/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
            int(raw.ops as f64),
            int(raw.ops_per_s()),
            raw.p50_us,
            raw.p99_us
        );
        println!(
            "   1 MB write+fdatasync      {:>9} ops  {:>10.0} MB/s    = {} 100-byte records/s",
            int(raw.mb_ops as f64),
            raw.mb_per_s(),
            int(raw.mb_records_per_s())
        );
        println!(
            "   with N files at once (a thread each, 100-byte write+fdatasync; {} files = the \
             logs of the default galaxy's mesh):",
            MANY_FILES[MANY_FILES.len() - 1]
        );
        for m in &self.many {
            println!(
                "   {:>3} files  {:>10} syncs/s   p50 {:>7.0} µs   p99 {:>7.0} µs   max {:>7.0} µs   \
                 {:.2}% of syncs >= {} ms",
                m.files,
                int(m.syncs_per_s),
                m.p50_us,
                m.p99_us,
                m.max_us,
                100.0 * m.stalls as f64 / m.syncs.max(1) as f64,
                many_files::STALL.as_millis()
            );
        }
        println!();
        println!(
            "2. durable appends through Log: each writer appends, waits until durable, repeats \
             (mean record {:.1} bytes encoded; tokio: multi-thread runtime, {} workers; \
             CPU µs/rec: whole process incl. kernel time)",
            self.mean_record_bytes(),
            self.cores
        );
        println!(
            "   {:<8} {:<46} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "writers",
            "how",
            "records/s",
            "p50 µs",
            "p99 µs",
            "rec/fsync",
            "fsyncs/s",
            "CPU µs/rec"
        );
        for (i, w) in self.writers.iter().enumerate() {
            let before = &self.writers[..i];
            if w.batch > 1 && before.iter().all(|p| p.batch == 1) {
                println!(
                    "   extra, not the target: {} records per append_batch call and wait \
                     (latency is per batch)",
                    w.batch
                );
            }
            if !w.disk && before.iter().all(|p| p.disk) {
                println!(
                    "   diagnostic, NOT durable: the Log over a file that keeps nothing \
                     (its own and tokio's CPU ceiling here)"
                );
            }
            println!(
                "   {:<8} {:<46} {:>11} {:>9.0} {:>9.0} {:>9.1} {:>9} {:>10}",
                if w.batch > 1 {
                    format!("{}x{}", w.writers, w.batch)
                } else {
                    w.writers.to_string()
                },
                w.how,
                int(w.records_per_s()),
                w.p50_us,
                w.p99_us,
                w.records_per_fsync(),
                int(w.fsyncs_per_s()),
                w.cpu_us_per_record()
                    .map_or("-".to_string(), |c| format!("{c:.2}"))
            );
        }
        println!();
        let w1p99 = self.writer("w1_thread").map_or(f64::NAN, |w| w.p99_us);
        println!(
            "3. single-writer p99 ack {:.0} µs / raw fdatasync p99 {:.0} µs = {:.2}x",
            w1p99,
            raw.p99_us,
            self.p99_ratio()
        );
        println!();
        println!(
            "4. replay of {} records ({:.1} MB, {:.1} bytes/record), one thread",
            int(rp.records as f64),
            rp.file_bytes as f64 / 1e6,
            self.replay_bytes_per_record()
        );
        println!(
            "   writing them: 1 thread, append without waiting, one wait  {:>10} records/s",
            int(rp.records as f64 / rp.gen_seconds)
        );
        println!(
            "   reading the file into memory                            {:>10.1} ms ({:.0} MB/s)",
            rp.read_seconds * 1e3,
            rp.file_bytes as f64 / 1e6 / rp.read_seconds
        );
        println!(
            "   scan (checksum + parse_line + seq check) from memory    {:>10} records/s  {:.0} MB/s  \
             (median of {}; best {})",
            int(rp.scan_records_per_s()),
            rp.file_bytes as f64 / 1e6 / rp.scan_seconds,
            rp.scan_reps,
            int(rp.records as f64 / rp.scan_best_seconds)
        );
        println!(
            "   Log::open (reads the file), visitor rec.get(\"player\")   {:>10} records/s  ({:.1} ms)",
            int(rp.records as f64 / rp.open_seconds),
            rp.open_seconds * 1e3
        );
        println!();
        println!("targets ({} cores):", self.cores);
        let r256 = self.w256_records_per_s();
        println!(
            "   durable ~100-byte records/s, 256 writers   target >= {:>9}   measured {:>10}   {}",
            int(TARGET_256_RECORDS_PER_S),
            int(r256),
            met(r256 >= TARGET_256_RECORDS_PER_S)
        );
        let ratio = self.p99_ratio();
        println!(
            "   single-writer p99 ack / raw fdatasync p99  target <= {:>8.1}x   measured {:>9.2}x   {}",
            TARGET_P99_RATIO,
            ratio,
            met(ratio <= TARGET_P99_RATIO)
        );
        let rr = rp.scan_records_per_s();
        println!(
            "   replay records/s on one core               target >= {:>9}   measured {:>10}   {}",
            int(TARGET_REPLAY_RECORDS_PER_S),
            int(rr),
            met(rr >= TARGET_REPLAY_RECORDS_PER_S)
        );
    }

    fn json(&self) -> Value {
        let raw = &self.raw;
        let rp = &self.replay;
        let writers: Vec<Value> = self
            .writers
            .iter()
            .map(|w| {
                json!({
                    "key": w.key,
                    "writers": w.writers,
                    "records_per_wait": w.batch,
                    "how": w.how,
                    "durable": w.disk,
                    "counts_for_target": w.key == "w256_async",
                    "records": w.records,
                    "seconds": w.seconds,
                    "records_per_s": w.records_per_s(),
                    "ack_p50_us": w.p50_us,
                    "ack_p99_us": w.p99_us,
                    "ack_p999_us": w.p999_us,
                    "durable_records": w.durable_records,
                    "fsyncs": w.fsyncs,
                    "records_per_fsync": w.records_per_fsync(),
                    "fsyncs_per_s": w.fsyncs_per_s(),
                    "mean_record_bytes": w.mean_record_bytes(),
                    "cpu_seconds": w.cpu_ns.map(|ns| ns as f64 / 1e9),
                    "cpu_us_per_record": w.cpu_us_per_record(),
                })
            })
            .collect();
        let r256 = self.w256_records_per_s();
        let ratio = self.p99_ratio();
        let rr = rp.scan_records_per_s();
        json!({
            "bench": "storage",
            "size": size_name(self.size),
            "cores": self.cores,
            "load_average_start": self.load.0,
            "load_average_end": self.load.1,
            "dir": self.dir,
            "total_seconds": self.total_s,
            "mean_record_bytes": self.mean_record_bytes(),
            "raw": {
                "record_bytes": 100,
                "ops": raw.ops,
                "seconds": raw.seconds,
                "ops_per_s": raw.ops_per_s(),
                "p50_us": raw.p50_us,
                "p99_us": raw.p99_us,
                "p999_us": raw.p999_us,
                "alternating_slices_with_single_writer": self.rounds,
                "mb_write_bytes": MB,
                "mb_ops": raw.mb_ops,
                "mb_seconds": raw.mb_seconds,
                "mb_per_s": raw.mb_per_s(),
                "mb_records_per_s_equiv_100b": raw.mb_records_per_s(),
            },
            "raw_many_files": self.many,
            "writers": writers,
            "single_writer_p99_over_raw_p99": ratio,
            "replay": {
                "records": rp.records,
                "file_bytes": rp.file_bytes,
                "bytes_per_record": self.replay_bytes_per_record(),
                "write_seconds": rp.gen_seconds,
                "write_records_per_s": rp.records as f64 / rp.gen_seconds,
                "read_seconds": rp.read_seconds,
                "scan_seconds_median": rp.scan_seconds,
                "scan_seconds_best": rp.scan_best_seconds,
                "scan_records_per_s_best": rp.records as f64 / rp.scan_best_seconds,
                "scan_reps": rp.scan_reps,
                "scan_records_per_s": rr,
                "scan_mb_per_s": rp.file_bytes as f64 / 1e6 / rp.scan_seconds,
                "open_seconds": rp.open_seconds,
                "open_records_per_s": rp.records as f64 / rp.open_seconds,
                "open_players_seen": rp.open_players,
            },
            "targets": {
                "w256_records_per_s": {
                    "target_min": TARGET_256_RECORDS_PER_S,
                    "measured": r256,
                    "met": r256 >= TARGET_256_RECORDS_PER_S,
                },
                "single_writer_p99_ratio": {
                    "target_max": TARGET_P99_RATIO,
                    "measured": ratio,
                    "met": ratio <= TARGET_P99_RATIO,
                },
                "replay_records_per_s": {
                    "target_min": TARGET_REPLAY_RECORDS_PER_S,
                    "measured": rr,
                    "met": rr >= TARGET_REPLAY_RECORDS_PER_S,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_benchmark_record_is_about_100_bytes() {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 1_234_567, KIND);
        encode(&mut line, &player_name(42), 1_234_567);
        line.finish();
        assert!(
            (95..=105).contains(&buf.len()),
            "{} bytes: {buf}",
            buf.len()
        );
    }
}
