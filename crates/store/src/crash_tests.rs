//! Crash tests of the storage layer: an acknowledged record survives any crash, whatever the disk
//! kept of what was not yet synced.
//!
//! A workload (several threads appending records one by one and in batches, with names holding
//! spaces, quotes, escapes and UTF-8; each thread notes the sequence numbers whose
//! [`Log::wait_durable`] returned `Ok`, the "acknowledged" ones) runs against a [`SimFile`] that
//! crashes at step k, for every step k a fault-free run takes (every write and every sync). After
//! each crash the test builds what a disk could hold: the durable bytes only; a torn prefix of the
//! unsynced bytes (cut mid-line, one byte short of a line end, exactly at line ends); all of
//! them; one flipped bit in the unsynced part (with the lines after it kept or not). Recovery
//! ([`scan`] from the beginning) must then succeed, hold every acknowledged record with exactly
//! its content, number the records contiguously from 1 with no duplicate, and cut exactly the
//! bytes from the first bad line on; a log reopened on what recovery kept must take more records
//! and scan clean. The same sweep runs again on a log reopened over a previous life's file.
//!
//! It also proves that a flipped bit anywhere in a synced batch followed by a later batch is
//! reported as corruption naming its line (never skipped, never read as another record), that
//! damage in the last batch is cut as a torn tail and reported, that a full disk (`Fault::Fail`)
//! at every step fails exactly the waiters not yet durable, stops the writer and keeps everything
//! acknowledged, and (proptest) that these hold for arbitrary workloads, crash steps and tear
//! points.
//!
//! Deterministic apart from thread interleaving (which only changes where batches fall; the
//! invariants hold for every interleaving): contents come from a seeded xorshift and from
//! proptest with a fixed seed.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngSeed, TestCaseError};

use super::disk::{Fault, SimFile};
use super::log::{Log, LogError};
use super::record::{Line, Record};
use super::scan::{scan, ScanOutcome, ScanStart};
use crate::seq::Seq;

/// The name the workload's log is opened under; every failure message must carry it.
const LOG_NAME: &str = "systems/crash-test.log";

const KINDS: [&str; 4] = ["join", "depart", "trade", "chat"];
const KEYS: [&str; 6] = ["player", "from", "to", "note", "credits", "t"];
/// Values that stress the encoding: spaces, quotes, escapes, control characters, UTF-8, and text
/// that looks like a checksum, a field or a whole next line.
const NAMES: [&str; 16] = [
    "Barnard's Kid",
    "\"Red\" Ruth",
    "Zoë Ångström",
    "火星の商人",
    "🚀 Rocket Ride",
    "tab\there",
    "back\\slash",
    "two\nlines",
    "",
    "plain_name",
    "a=b c=d",
    " ~00000000",
    "x ~deadbeef\n2 join player=evil ~12345678",
    "\u{7}bell\r\n",
    "trailing space ",
    "alpha-centauri:7",
];

/// One record as the workload appends it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    kind: &'static str,
    fields: Vec<(&'static str, String)>,
}

impl Rec {
    fn encode(&self, line: &mut Line<'_>) {
        for (k, v) in &self.fields {
            line.field(k, v);
        }
    }

    /// Whether `r` is exactly this record (kind and every field, in order), apart from the
    /// batch mark `b=` the log itself puts first on the first record of each batch.
    fn matches(&self, r: &Record<'_>) -> bool {
        let fields = match r.fields.first() {
            Some((k, _)) if *k == crate::scan::BATCH_FIELD => &r.fields[1..],
            _ => &r.fields[..],
        };
        r.kind == self.kind
            && fields.len() == self.fields.len()
            && fields
                .iter()
                .zip(&self.fields)
                .all(|((k, v), (ek, ev))| k == ek && v.as_ref() == ev.as_str())
    }
}

/// What one thread does: append one record or a batch, then wait until it is durable.
#[derive(Clone, Debug)]
enum Op {
    One(Rec),
    Batch(Vec<Rec>),
}

/// One list of operations per thread.
type Workload = Vec<Vec<Op>>;

/// A small seeded generator, so every run builds the same workload.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn gen_rec(rng: &mut XorShift) -> Rec {
    let kind = KINDS[rng.below(KINDS.len())];
    let fields = (0..rng.below(5))
        .map(|_| {
            let key = KEYS[rng.below(KEYS.len())];
            let value = match rng.below(4) {
                0 => rng.next().to_string(),
                1 => format!("{}{}", NAMES[rng.below(NAMES.len())], rng.below(100)),
                _ => NAMES[rng.below(NAMES.len())].to_string(),
            };
            (key, value)
        })
        .collect();
    Rec { kind, fields }
}

fn gen_workload(seed: u64, threads: usize, ops: usize) -> Workload {
    let mut rng = XorShift::new(seed);
    (0..threads)
        .map(|_| {
            (0..ops)
                .map(|_| match rng.below(4) {
                    0 => Op::Batch((0..1 + rng.below(4)).map(|_| gen_rec(&mut rng)).collect()),
                    _ => Op::One(gen_rec(&mut rng)),
                })
                .collect()
        })
        .collect()
}

/// The outcome of one wait: the records it covered and what `wait_durable` said.
#[derive(Debug)]
struct Wait {
    first: u64,
    last: u64,
    result: Result<(), String>,
}

#[derive(Debug, Default)]
struct ThreadOutcome {
    appended: Vec<(u64, Rec)>,
    waits: Vec<Wait>,
    /// An append refused (the log had failed before this thread's append).
    append_error: Option<String>,
    /// After its wait failed, whether the thread's next append was refused.
    refused_after_failure: Option<bool>,
}

/// What a workload run did, as its threads saw it.
#[derive(Debug)]
struct Run {
    /// Every record that got a sequence number, with its content.
    appended: BTreeMap<u64, Rec>,
    /// Sequence numbers whose `wait_durable` returned `Ok`.
    acked: BTreeSet<u64>,
    waits: Vec<Wait>,
    append_errors: Vec<String>,
    refused_after_failure: Vec<bool>,
    durable_seq: u64,
    /// An append tried after the threads finished, only if some wait failed.
    late_append: Option<Result<u64, LogError>>,
    close: Result<u64, LogError>,
}

fn run_thread(log: &Log, ops: &[Op]) -> ThreadOutcome {
    let mut t = ThreadOutcome::default();
    for op in ops {
        let appended = match op {
            Op::One(r) => log
                .append(r.kind, |l| r.encode(l))
                .map(|s| vec![(s.0, r.clone())]),
            Op::Batch(rs) => log
                .append_batch(rs, |r| r.kind, |r, l| r.encode(l))
                .map(|last| {
                    let last = last
                        .expect("a non-empty batch has a last sequence number")
                        .0;
                    let first = last + 1 - rs.len() as u64;
                    (first..=last).zip(rs.iter().cloned()).collect()
                }),
        };
        let recs = match appended {
            Ok(v) => v,
            Err(e) => {
                t.append_error = Some(e.to_string());
                break;
            }
        };
        let (first, last) = (recs[0].0, recs[recs.len() - 1].0);
        t.appended.extend(recs);
        match log.wait_durable(Seq(last)) {
            Ok(()) => t.waits.push(Wait {
                first,
                last,
                result: Ok(()),
            }),
            Err(e) => {
                t.waits.push(Wait {
                    first,
                    last,
                    result: Err(e.to_string()),
                });
                t.refused_after_failure = Some(log.append("chat", |_| {}).is_err());
                break;
            }
        }
    }
    t
}

/// Runs `work` on a log over `file` (whose durable content ends at record `next_seq - 1`).
fn run_workload(work: &Workload, file: &SimFile, next_seq: u64) -> Run {
    let log = Log::with_file(LOG_NAME.into(), Box::new(file.clone()), next_seq);
    let outcomes: Vec<ThreadOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .iter()
            .map(|ops| {
                let log = log.clone();
                s.spawn(move || run_thread(&log, ops))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("workload thread panicked"))
            .collect()
    });
    let mut run = Run {
        appended: BTreeMap::new(),
        acked: BTreeSet::new(),
        waits: Vec::new(),
        append_errors: Vec::new(),
        refused_after_failure: Vec::new(),
        durable_seq: log.durable_seq().0,
        late_append: None,
        close: Ok(0),
    };
    for t in outcomes {
        for (seq, rec) in t.appended {
            assert!(
                run.appended.insert(seq, rec).is_none(),
                "sequence number {seq} handed out twice"
            );
        }
        for w in &t.waits {
            if w.result.is_ok() {
                run.acked.extend(w.first..=w.last);
            }
        }
        run.waits.extend(t.waits);
        run.append_errors.extend(t.append_error);
        run.refused_after_failure.extend(t.refused_after_failure);
    }
    if run.waits.iter().any(|w| w.result.is_err()) {
        run.late_append = Some(log.append("chat", |_| {}).map(|s| s.0));
    }
    run.close = log.close().map(|s| s.0);
    run
}

/// Checks what the writer told its callers, for a run whose fault fired (`fault` is a text its
/// error must contain) or not (`None`).
fn check_run(run: &Run, fault: Option<&str>, first_seq: u64) -> Result<(), String> {
    let appended: Vec<u64> = run.appended.keys().copied().collect();
    let expect: Vec<u64> = (first_seq..first_seq + appended.len() as u64).collect();
    if appended != expect {
        return Err(format!("sequence numbers handed out {appended:?}"));
    }
    for w in &run.waits {
        // A waiter gets Ok exactly when its records are durable, the error otherwise.
        match (&w.result, w.last <= run.durable_seq) {
            (Ok(()), true) => {}
            (Ok(()), false) => {
                return Err(format!(
                    "records {}..={} acknowledged but durable_seq is {}",
                    w.first, w.last, run.durable_seq
                ))
            }
            (Err(e), false) => {
                let want = fault.ok_or_else(|| format!("no fault, yet a wait failed: {e}"))?;
                if !e.contains(LOG_NAME) || !e.contains(want) {
                    return Err(format!(
                        "wait error {e:?} does not name {LOG_NAME} and {want}"
                    ));
                }
            }
            (Err(e), true) => {
                return Err(format!(
                    "records {}..={} durable (durable_seq {}) but their wait failed: {e}",
                    w.first, w.last, run.durable_seq
                ))
            }
        }
    }
    if run.refused_after_failure.iter().any(|refused| !refused) {
        return Err("an append after a failed wait was accepted".into());
    }
    match fault {
        None => {
            if !run.append_errors.is_empty() || run.late_append.is_some() {
                return Err(format!("no fault, yet errors: {:?}", run.append_errors));
            }
            let last = first_seq - 1 + appended.len() as u64;
            match &run.close {
                Ok(s) if *s == last => {}
                other => return Err(format!("close gave {other:?}, expected Ok({last})")),
            }
            if run.acked.len() != appended.len() {
                return Err("no fault, yet not every record was acknowledged".into());
            }
        }
        Some(want) => {
            for e in &run.append_errors {
                if !e.contains(want) {
                    return Err(format!("append refused with {e:?}, expected {want:?}"));
                }
            }
            if let Some(Ok(seq)) = &run.late_append {
                return Err(format!("a failed log accepted record {seq}"));
            }
            if run.close.is_ok() {
                return Err("close of a failed log reported success".into());
            }
        }
    }
    Ok(())
}

/// Byte spans `(start, end)` of the lines of `bytes`; `end` is past the newline, or the end of
/// `bytes` for an incomplete last line.
fn line_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
        spans.push((start, end));
        start = end;
    }
    spans
}

/// What recovery must find in a disk image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expect {
    /// Valid records (all of them from the beginning).
    records: u64,
    /// Torn tail: byte offset and line number where it starts.
    torn_at: Option<(u64, u64)>,
}

/// Recovers `image` and checks the invariants: the scan succeeds, every record read is one that
/// was appended with exactly its content, sequence numbers run 1, 2, 3... with no duplicate,
/// every acknowledged record is there, and the scan found exactly what `expect` says.
fn recover(image: &[u8], run: &Run, expect: Expect, what: &str) -> Result<ScanOutcome, String> {
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    let out = scan(image, ScanStart::BEGINNING, |r| {
        seen.push(r.seq);
        if !run.appended.get(&r.seq).is_some_and(|e| e.matches(r)) {
            wrong.push(format!("{r:?}"));
        }
        Ok(())
    })
    .map_err(|c| format!("{what}: recovery reported corruption: {c}"))?;
    if !wrong.is_empty() {
        return Err(format!(
            "{what}: records that were never appended: {wrong:?}"
        ));
    }
    if seen != (1..=seen.len() as u64).collect::<Vec<_>>() {
        return Err(format!(
            "{what}: sequence numbers not contiguous from 1: {seen:?}"
        ));
    }
    if let Some(&max_acked) = run.acked.last() {
        if (seen.len() as u64) < max_acked {
            return Err(format!(
                "{what}: acknowledged record {max_acked} lost (recovered {})",
                seen.len()
            ));
        }
    }
    let torn_at = out.torn.as_ref().map(|t| (t.offset, t.line));
    let end = torn_at.map_or(image.len() as u64, |(o, _)| o);
    if out.records != expect.records
        || torn_at != expect.torn_at
        || out.end_offset != end
        || out.last_seq != seen.last().copied()
    {
        return Err(format!(
            "{what}: expected {expect:?}, recovery found {out:?}"
        ));
    }
    Ok(out)
}

/// Records appended after a reopen: the same awkward contents.
fn extra_records() -> Vec<Rec> {
    vec![
        Rec {
            kind: "join",
            fields: vec![("player", "O'Neil \"the Third\" Ærø 🚀".into())],
        },
        Rec {
            kind: "chat",
            fields: vec![
                ("note", "line one\nline two\t\u{1}".into()),
                ("t", "9".into()),
            ],
        },
        Rec {
            kind: "depart",
            fields: vec![],
        },
    ]
}

/// Reopens a log on what recovery kept (the image up to `end_offset`), appends more records, and
/// checks that the file then scans clean with contiguous sequence numbers.
fn reopen_and_extend(image: &[u8], out: &ScanOutcome, what: &str) -> Result<(), String> {
    let kept = image[..out.end_offset as usize].to_vec();
    let file = SimFile::with_content(kept.clone());
    let next = out.last_seq.map_or(1, |s| s + 1);
    let log = Log::with_file("reopened.log".into(), Box::new(file.clone()), next);
    let extra = extra_records();
    for (i, r) in extra.iter().enumerate() {
        let seq = log
            .append(r.kind, |l| r.encode(l))
            .map_err(|e| e.to_string())?;
        if seq != Seq(next + i as u64) {
            return Err(format!(
                "{what}: reopened log gave {seq}, expected {}",
                next + i as u64
            ));
        }
    }
    let last = next + extra.len() as u64 - 1;
    log.wait_durable(Seq(last))
        .map_err(|e| format!("{what}: {e}"))?;
    match log.close() {
        Ok(s) if s == Seq(last) => {}
        other => return Err(format!("{what}: reopened close gave {other:?}")),
    }
    let s = file.lock();
    if !s.unsynced.is_empty() || !s.durable.starts_with(&kept) {
        return Err(format!(
            "{what}: reopened log did not append after what was kept"
        ));
    }
    let mut seqs = Vec::new();
    let mut wrong = 0;
    let after = scan(&s.durable, ScanStart::BEGINNING, |r| {
        seqs.push(r.seq);
        if r.seq >= next && !extra[(r.seq - next) as usize].matches(r) {
            wrong += 1;
        }
        Ok(())
    })
    .map_err(|c| format!("{what}: reopened log is corrupt: {c}"))?;
    if after.torn.is_some() || wrong != 0 || seqs != (1..=last).collect::<Vec<_>>() {
        return Err(format!(
            "{what}: reopened log scans {after:?}, seqs {seqs:?}"
        ));
    }
    Ok(())
}

/// Expectation for `durable ++ unsynced[..cut]`: whole lines are records, the rest is torn.
fn expect_cut(durable: &[u8], d_lines: u64, u_spans: &[(usize, usize)], cut: usize) -> Expect {
    let whole: Vec<_> = u_spans.iter().filter(|&&(_, e)| e <= cut).collect();
    let whole_end = whole.last().map_or(0, |&&(_, e)| e);
    Expect {
        records: d_lines + whole.len() as u64,
        torn_at: (cut > whole_end).then(|| {
            (
                (durable.len() + whole_end) as u64,
                d_lines + whole.len() as u64 + 1,
            )
        }),
    }
}

/// Counts of what the disk variants showed, for the report.
#[derive(Debug, Default)]
struct Tally {
    crash_points: u64,
    images: u64,
}

/// Checks every disk image a crash could leave, given the durable and unsynced bytes.
fn check_crash_images(
    run: &Run,
    durable: &[u8],
    unsynced: &[u8],
    rng: &mut XorShift,
    tally: &mut Tally,
    what: &str,
) -> Result<(), String> {
    let d_lines = line_spans(durable).len() as u64;
    // Durable only: exactly the records made durable, and nothing torn.
    let out = recover(
        durable,
        run,
        Expect {
            records: d_lines,
            torn_at: None,
        },
        &format!("{what}, durable only"),
    )?;
    if out.last_seq.unwrap_or(0) != run.durable_seq {
        return Err(format!(
            "{what}: durable bytes end at {:?}, durable_seq says {}",
            out.last_seq, run.durable_seq
        ));
    }
    reopen_and_extend(durable, &out, what)?;
    tally.images += 1;
    if unsynced.is_empty() {
        return Ok(());
    }

    // Torn prefixes, including mid-line, one short of a line end, exactly at line ends (the
    // last of which keeps every unsynced byte), one past, and a few at random.
    let u_spans = line_spans(unsynced);
    let mut cuts = BTreeSet::from([0, 1, unsynced.len()]);
    for &(s, e) in &u_spans {
        cuts.extend([s + (e - s) / 2, e - 1, e, e + 1, s + 3]);
    }
    for _ in 0..3 {
        cuts.insert(rng.below(unsynced.len() + 1));
    }
    for cut in cuts.into_iter().filter(|&c| c <= unsynced.len()) {
        let image = [durable, &unsynced[..cut]].concat();
        let expect = expect_cut(durable, d_lines, &u_spans, cut);
        let what = format!("{what}, {cut} of {} unsynced bytes kept", unsynced.len());
        let out = recover(&image, run, expect, &what)?;
        reopen_and_extend(&image, &out, &what)?;
        tally.images += 1;
    }

    // One flipped bit in the unsynced part: in random places, in the first line's checksum and
    // in the last line's newline.
    let mut bits: Vec<usize> = (0..6).map(|_| rng.below(unsynced.len() * 8)).collect();
    bits.push((u_spans[0].1 - 3) * 8 + rng.below(8));
    bits.push((unsynced.len() - 1) * 8 + rng.below(8));
    for bit in bits {
        let mut flipped = unsynced.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let j = u_spans
            .iter()
            .position(|&(s, e)| s <= bit / 8 && bit / 8 < e)
            .expect("every byte is in a line");
        let (start, end) = u_spans[j];
        let torn = Expect {
            records: d_lines + j as u64,
            torn_at: Some(((durable.len() + start) as u64, d_lines + j as u64 + 1)),
        };
        // The write tore inside the flipped line: it is cut as torn, never read as a record.
        let image = [durable, &flipped[..end]].concat();
        let what = format!("{what}, bit {bit} of the unsynced part flipped, line {j} last");
        let out = recover(&image, run, torn, &what)?;
        reopen_and_extend(&image, &out, &what)?;
        tally.images += 1;
        // Everything kept: the valid lines after the flipped one belong to the same never-synced
        // batch (no later batch starts), so they are part of the torn tail too.
        let image = [durable, &flipped].concat();
        let what = format!("{what}, all kept");
        let out = recover(&image, run, torn, &what)?;
        reopen_and_extend(&image, &out, &what)?;
        tally.images += 1;
    }
    Ok(())
}

/// A previous life of the log: what it appended and acknowledged, and the file it left (whole
/// batches, all synced).
struct Prior {
    run: Run,
    durable: Vec<u8>,
}

/// Runs `work` on a log over a file holding `prior`'s bytes (or an empty file) and checks what
/// the writer told its callers: with `fault` (see [`check_run`]) if `fired` says, once the run
/// is over, that the fault fired. Then folds what the previous life appended and acknowledged
/// into the run, so that recovery checks see the whole file.
fn run_after(
    work: &Workload,
    file: &SimFile,
    prior: Option<&Prior>,
    fault: &str,
    fired: impl Fn(&SimFile) -> bool,
) -> Result<Run, String> {
    let next = prior.map_or(1, |p| p.run.appended.len() as u64 + 1);
    let mut run = run_workload(work, file, next);
    check_run(&run, fired(file).then_some(fault), next)?;
    if let Some(p) = prior {
        run.appended
            .extend(p.run.appended.iter().map(|(s, r)| (*s, r.clone())));
        run.acked.extend(&p.run.acked);
    }
    Ok(run)
}

fn crashed(file: &SimFile) -> bool {
    file.lock().crashed
}

/// Runs `work` once without a fault, then with a crash at every step 0, 1, 2... until a run
/// ends before reaching the step (and at least as far as the fault-free run went), checking
/// every disk image each crash can leave. With `prior`, every run starts on a log reopened over
/// the previous life's file. Returns the fault-free run, as a prior for a next life.
fn crash_sweep(work: &Workload, seed: u64, prior: Option<&Prior>, tally: &mut Tally) -> Prior {
    let start = prior.map_or_else(Vec::new, |p| p.durable.clone());
    let clean = SimFile::with_content(start.clone());
    let run = run_after(work, &clean, prior, "simulated crash", crashed).unwrap();
    let fault_free_steps = clean.lock().steps;
    let durable = clean.lock().durable.clone();
    let all = Expect {
        records: run.appended.len() as u64,
        torn_at: None,
    };
    recover(&durable, &run, all, "fault-free").unwrap();

    let mut rng = XorShift::new(seed);
    for step in 0.. {
        assert!(step < 10_000, "runaway crash sweep");
        let file = SimFile::with_content(start.clone());
        file.fault_at(step, Fault::Crash);
        let life = if prior.is_some() { "reopened, " } else { "" };
        let what = format!("seed {seed}, {life}crash at step {step}");
        let run = run_after(work, &file, prior, "simulated crash", crashed)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (durable, unsynced, crashed) = {
            let s = file.lock();
            (s.durable.clone(), s.unsynced.clone(), s.crashed)
        };
        assert!(
            durable.starts_with(&start),
            "{what}: the previous life changed"
        );
        if crashed {
            tally.crash_points += 1;
            check_crash_images(&run, &durable, &unsynced, &mut rng, tally, &what)
                .unwrap_or_else(|e| panic!("{e}"));
        } else {
            assert!(
                unsynced.is_empty(),
                "{what}: unsynced bytes left without a fault"
            );
            recover(&durable, &run, all, &what).unwrap_or_else(|e| panic!("{e}"));
            if step >= fault_free_steps {
                break;
            }
        }
    }
    Prior { run, durable }
}

#[test]
fn an_acknowledged_record_survives_a_crash_at_every_step() {
    let mut tally = Tally::default();
    for (seed, threads, ops) in [(1, 1, 16), (2, 3, 12), (3, 4, 10), (4, 2, 14), (5, 6, 6)] {
        let work = gen_workload(seed, threads, ops);
        let first = crash_sweep(&work, seed, None, &mut tally);
        // A second life over the first one's file: its batch marks start again from 1.
        let work = gen_workload(seed + 100, threads, ops / 2);
        crash_sweep(&work, seed + 100, Some(&first), &mut tally);
    }
    println!("crash sweep: {tally:?}");
    assert!(tally.crash_points >= 150, "{tally:?}");
}

/// A deterministic log of `batches` acknowledged batches of 1 to 4 records (one thread, each
/// batch appended at once and waited for, so each is one write and one sync), and the line
/// index of each batch's first record.
fn acknowledged_batches(batches: usize, seed: u64) -> (Run, Vec<u8>, Vec<usize>) {
    let mut rng = XorShift::new(seed);
    let ops: Vec<Op> = (0..batches)
        .map(|_| Op::Batch((0..1 + rng.below(4)).map(|_| gen_rec(&mut rng)).collect()))
        .collect();
    let mut starts = Vec::new();
    let mut line = 0;
    for op in &ops {
        starts.push(line);
        line += match op {
            Op::Batch(rs) => rs.len(),
            Op::One(_) => 1,
        };
    }
    let file = SimFile::default();
    let run = run_workload(&vec![ops], &file, 1);
    check_run(&run, None, 1).unwrap();
    assert_eq!(
        file.lock().steps,
        2 * batches as u64,
        "one write and one sync a batch"
    );
    let durable = file.lock().durable.clone();
    // The log marks exactly the first record of each batch.
    let mut marked = Vec::new();
    scan(&durable, ScanStart::BEGINNING, |r| {
        if r.get(crate::scan::BATCH_FIELD).is_some() {
            marked.push(r.seq as usize - 1);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(marked, starts);
    (run, durable, starts)
}

/// What flipping one bit of a clean log must give: corruption at the damaged line if a later
/// batch starts after the damage (that batch was written only once the damaged one was synced),
/// else a torn tail from the damaged line on.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Corrupt { line: u64, offset: u64 },
    Torn { line: u64, offset: u64 },
}

fn verdict(spans: &[(usize, usize)], starts: &[usize], byte: usize) -> Verdict {
    let i = spans
        .iter()
        .position(|&(s, e)| s <= byte && byte < e)
        .unwrap();
    let (start, end) = spans[i];
    // A flipped newline joins the line with the next one: both are one bad line.
    let last_bad = if byte + 1 == end { i + 1 } else { i };
    let (line, offset) = (i as u64 + 1, start as u64);
    if starts.iter().any(|&k| k > last_bad) {
        Verdict::Corrupt { line, offset }
    } else {
        Verdict::Torn { line, offset }
    }
}

/// Flips every bit of `lines` (line indices) of `durable` in turn; checks each against
/// [`verdict`] and that no record at or after the damage is ever read. Returns how many flips
/// gave corruption, how many a torn tail, and how many acknowledged, intact records the torn
/// cuts dropped in all.
fn flip_every_bit(
    run: &Run,
    durable: &[u8],
    starts: &[usize],
    lines: std::ops::Range<usize>,
) -> (u64, u64, u64) {
    let spans = line_spans(durable);
    let (mut corrupt, mut torn, mut dropped) = (0, 0, 0);
    for &(start, end) in &spans[lines] {
        for byte in start..end {
            for bit in 0..8u8 {
                let mut image = durable.to_vec();
                image[byte] ^= 1 << bit;
                let mut seen = Vec::new();
                let got = match scan(&image, ScanStart::BEGINNING, |r| {
                    seen.push(r.seq);
                    Ok(())
                }) {
                    Ok(out) => {
                        let t = out.torn.expect("a damaged log is never clean");
                        assert_eq!(out.end_offset, t.offset);
                        Verdict::Torn {
                            line: t.line,
                            offset: t.offset,
                        }
                    }
                    Err(c) => Verdict::Corrupt {
                        line: c.line,
                        offset: c.offset,
                    },
                };
                let want = verdict(&spans, starts, byte);
                assert_eq!(got, want, "byte {byte} bit {bit}");
                let (Verdict::Corrupt { line, .. } | Verdict::Torn { line, .. }) = want;
                // Records before the damage are read; nothing at or after it.
                assert!(
                    seen.iter().all(|&s| s < line),
                    "byte {byte} bit {bit}: {seen:?}"
                );
                if let Verdict::Torn { .. } = want {
                    assert_eq!(seen, (1..line).collect::<Vec<_>>(), "byte {byte} bit {bit}");
                    torn += 1;
                    // Intact records after the damaged line (or the two a flipped newline joins).
                    let first_intact = if byte + 1 == end { line + 2 } else { line + 1 };
                    dropped += run.acked.range(first_intact..).count() as u64;
                } else {
                    corrupt += 1;
                }
            }
        }
    }
    (corrupt, torn, dropped)
}

#[test]
fn a_flipped_bit_in_a_synced_batch_followed_by_another_is_corruption_at_its_line() {
    let (run, durable, starts) = acknowledged_batches(8, 7);
    let last_start = *starts.last().unwrap();
    // Every line of every batch but the last: a later batch follows (except when the flipped
    // bit is the newline that joins a batch's last line to the last batch's first line, which
    // the verdict calls torn).
    let (corrupt, torn, _) = flip_every_bit(&run, &durable, &starts, 0..last_start);
    println!("{corrupt} flips in synced batches reported as corruption at their line, {torn} torn");
    assert!(corrupt > 1000 && torn <= 8, "{corrupt} {torn}");
    // The whole log is still the record of acknowledged writes.
    let all = Expect {
        records: run.appended.len() as u64,
        torn_at: None,
    };
    recover(&durable, &run, all, "unflipped").unwrap();
}

#[test]
fn damage_in_the_last_batch_is_cut_and_reported_never_read_as_another_record() {
    // With no later batch, damage in the last batch cannot be told from a torn write of a batch
    // that was never synced: recovery cuts from the damaged line on and reports the cut
    // (Log::open returns it); it never reads the damaged line as a record. If the last batch had
    // in fact been synced and acknowledged, its intact records after the damage are cut too.
    let (run, durable, starts) = acknowledged_batches(5, 11);
    let lines = line_spans(&durable).len();
    let last_start = *starts.last().unwrap();
    assert!(lines - last_start > 1, "the last batch has several records");
    let (corrupt, torn, dropped) = flip_every_bit(&run, &durable, &starts, last_start..lines);
    println!(
        "{torn} flips in the last batch cut as torn; the cuts dropped {dropped} intact \
         acknowledged records in all"
    );
    assert_eq!(corrupt, 0);
    assert!(torn > 0);
}

#[test]
fn a_full_disk_at_every_step_fails_the_waiters_and_keeps_what_was_acknowledged() {
    let work = gen_workload(5, 3, 8);
    let clean = SimFile::default();
    check_run(&run_workload(&work, &clean, 1), None, 1).unwrap();
    let fault_free_steps = clean.lock().steps;
    let mut fired = 0;
    for step in 0.. {
        assert!(step < 10_000, "runaway sweep");
        let file = SimFile::default();
        file.fault_at(step, Fault::Fail);
        let run = run_workload(&work, &file, 1);
        let (durable, unsynced, steps) = {
            let s = file.lock();
            (s.durable.clone(), s.unsynced.clone(), s.steps)
        };
        let failed = steps > step;
        let what = format!("full disk at step {step}");
        check_run(&run, failed.then_some("no space left"), 1)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if !failed {
            if step >= fault_free_steps {
                break;
            }
            continue;
        }
        fired += 1;
        // The writer stopped at the failure: no write or sync after it.
        assert_eq!(steps, step + 1, "{what}: I/O after the failure");
        // The durable bytes hold exactly the acknowledged batches, whole.
        let d_lines = line_spans(&durable).len() as u64;
        let expect = Expect {
            records: d_lines,
            torn_at: None,
        };
        let out = recover(&durable, &run, expect, &what).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.last_seq.unwrap_or(0), run.durable_seq, "{what}");
        assert_eq!(
            run.acked.last().copied().unwrap_or(0),
            run.durable_seq,
            "{what}"
        );
        reopen_and_extend(&durable, &out, &what).unwrap_or_else(|e| panic!("{e}"));
        // A failed sync may leave its batch written but unsynced; a restart may find it.
        if !unsynced.is_empty() {
            let image = [&durable[..], &unsynced].concat();
            let expect = Expect {
                records: d_lines + line_spans(&unsynced).len() as u64,
                torn_at: None,
            };
            let what = format!("{what}, unsynced batch kept");
            let out = recover(&image, &run, expect, &what).unwrap_or_else(|e| panic!("{e}"));
            reopen_and_extend(&image, &out, &what).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    println!("full disk injected at {fired} steps");
    assert!(fired >= 10, "{fired}");
}

/// A log with two acknowledged records and a batch of three whose sync crashed: the batch is
/// written but not synced.
fn crash_during_a_batch_sync() -> (Run, Vec<u8>, Vec<u8>) {
    let mut rng = XorShift::new(21);
    crash_during_this_batch_sync((0..3).map(|_| gen_rec(&mut rng)).collect())
}

/// [`crash_during_a_batch_sync`] with the given three records in the crashed batch.
fn crash_during_this_batch_sync(batch: Vec<Rec>) -> (Run, Vec<u8>, Vec<u8>) {
    let mut rng = XorShift::new(21);
    let work = vec![vec![
        Op::One(gen_rec(&mut rng)),
        Op::One(gen_rec(&mut rng)),
        Op::Batch(batch),
    ]];
    let file = SimFile::default();
    // Steps: write 1, sync 1, write 2, sync 2, write batch, sync batch (crash).
    file.fault_at(5, Fault::Crash);
    let run = run_workload(&work, &file, 1);
    check_run(&run, Some("simulated crash"), 1).unwrap();
    let s = file.lock();
    assert!(s.crashed);
    assert_eq!(line_spans(&s.unsynced).len(), 3);
    assert_eq!(run.acked, BTreeSet::from([1, 2]));
    (run, s.durable.clone(), s.unsynced.clone())
}

#[test]
fn damage_inside_an_unsynced_batch_is_a_torn_tail() {
    let (run, durable, unsynced) = crash_during_a_batch_sync();
    let first_end = line_spans(&unsynced)[0].1;
    let torn = Expect {
        records: 2,
        torn_at: Some((durable.len() as u64, 3)),
    };
    // One bit flipped in the batch's first line; or its first bytes never written (zeros, as a
    // file system that persisted the size and a later block, not the first, leaves them).
    let mut flipped = unsynced.clone();
    flipped[4] ^= 0x02;
    let mut zeroed = unsynced.clone();
    zeroed[..first_end - 1].fill(0);
    for (name, damaged) in [("flipped bit", flipped), ("zeroed block", zeroed)] {
        let image = [&durable[..], &damaged].concat();
        let out = recover(&image, &run, torn, name).unwrap_or_else(|e| panic!("{e}"));
        reopen_and_extend(&image, &out, name).unwrap();
    }
}

#[test]
#[should_panic(expected = "reserved for the log")]
fn a_writer_cannot_use_the_batch_mark_key() {
    // The application's own field `b` (say, a bid) would pass for a batch start: refused.
    let log = Log::with_file("sim".into(), Box::new(SimFile::default()), 1);
    let _ = log.append("trade", |l| {
        l.field("b", "1200");
    });
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(&NAMES[..]).prop_map(String::from),
        any::<String>(),
        "[ -~]{0,12}",
        any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        proptest::sample::select(&KINDS[..]),
        proptest::collection::vec(
            (proptest::sample::select(&KEYS[..]), value_strategy()),
            0..4,
        ),
    )
        .prop_map(|(kind, fields)| Rec { kind, fields })
}

fn workload_strategy() -> impl Strategy<Value = Workload> {
    let op = prop_oneof![
        3 => rec_strategy().prop_map(Op::One),
        1 => proptest::collection::vec(rec_strategy(), 1..4).prop_map(Op::Batch),
    ];
    proptest::collection::vec(proptest::collection::vec(op, 1..6), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x6d6c_7472_6164_6572),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// For any workload, crash step and tear point (and maybe one flipped bit anywhere in the
    /// kept unsynced bytes), recovery keeps every acknowledged record intact, numbers them
    /// contiguously, cuts exactly from the first bad line on, and the reopened log goes on
    /// cleanly.
    #[test]
    fn any_workload_survives_any_crash_and_tear(
        work in workload_strategy(),
        crash_step in 0u64..48,
        tear in any::<Index>(),
        flip in proptest::option::of(any::<Index>()),
    ) {
        let file = SimFile::default();
        file.fault_at(crash_step, Fault::Crash);
        let run = run_workload(&work, &file, 1);
        let (durable, unsynced, crashed) = {
            let s = file.lock();
            (s.durable.clone(), s.unsynced.clone(), s.crashed)
        };
        check_run(&run, crashed.then_some("simulated crash"), 1).map_err(TestCaseError::fail)?;
        let d_lines = line_spans(&durable).len() as u64;
        let u_spans = line_spans(&unsynced);
        let cut = tear.index(unsynced.len() + 1);
        let mut kept = unsynced[..cut].to_vec();
        let mut expect = expect_cut(&durable, d_lines, &u_spans, cut);
        if let (Some(flip), false) = (flip, kept.is_empty()) {
            let bit = flip.index(kept.len() * 8);
            kept[bit / 8] ^= 1 << (bit % 8);
            let j = u_spans.iter().position(|&(s, e)| s <= bit / 8 && bit / 8 < e).unwrap();
            let start = u_spans[j].0;
            expect = Expect {
                records: d_lines + j as u64,
                torn_at: Some(((durable.len() + start) as u64, d_lines + j as u64 + 1)),
            };
        }
        let image = [&durable[..], &kept].concat();
        let out = recover(&image, &run, expect, "property").map_err(TestCaseError::fail)?;
        reopen_and_extend(&image, &out, "property").map_err(TestCaseError::fail)?;
    }
}
