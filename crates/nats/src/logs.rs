//! The logs in one JetStream stream: [`NatsLogs`] implements [`LogStore`], one subject per log
//! ([`crate::subject`]), and [`JetStreamFile`] is the [`AppendFile`] a log's committer writes
//! through.
//!
//! The log's committer (store::log) appends a group commit's records, then syncs once. Here
//! `append` only buffers, and `sync` publishes the buffer as one message (split at line ends
//! only when it exceeds the server's `max_payload`) and waits for the stream's ack, which on a
//! `sync_interval: always` server means the three replicas' quorum has it on disk. So a record
//! is acknowledged to a player only once JetStream has it, exactly as with files.
//!
//! Every message carries:
//! - `Nats-Msg-Id`: this writer's id and the batch's number. A publish whose ack is lost is
//!   sent again with the same id and the same expected sequence; the stream checks ids first,
//!   answers `duplicate` with the original sequence, and stores nothing twice.
//! - `Nats-Expected-Last-Subject-Sequence`: the stream sequence of the subject's last message
//!   as this writer knows it. A writer that lost its place (another node took over and wrote:
//!   this one is a zombie) is refused (error 10071), its log is poisoned, and it stops.
//! - `Mlt-Node` and `Mlt-Epoch`: the writing node and the epoch of the lease it holds
//!   ([`NatsLogs::hold`]; 0 for a writer that holds none, as tests and benchmarks), so an
//!   export can prove that no zombie's message was accepted: within a subject the epochs never
//!   decrease, and every message after a `lease epoch=E` record carries E.
//!
//! A node holding the galaxy's lease appends a `lease` record ([`store::lease`]) to every log
//! it opens, right after reading it to its end and before anything else, with the expected
//! last sequence it read: from then on an older owner cannot append to that log.
//!
//! Message bodies are the exact record lines, checksums included: the subject's messages in
//! order are byte for byte the file the local mode would have written, and reading a log hands
//! them to the store's scanner as the file and memory backends do. A read from a snapshot's
//! position does not fetch the subject from its start: a binary search over stream sequences
//! (each probe one message read at the stream leader) finds the message holding the
//! position's record, and only it and the later messages are fetched. This module never writes
//! without the expected sequence and never interprets a record.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, LastRawMessageErrorKind, StorageType, Stream};
use async_nats::jetstream::Context;
use futures_util::{StreamExt, TryStreamExt};
use store::backend::{read_start, LogStore, Visit};
use store::disk::AppendFile;
use store::lease::{LeaseRecord, LEASE_KIND};
use store::log::{Log, LogError, Opened, Position};
use store::record::{parse_line, MAX_RECORD_BYTES};
use store::scan::{scan, ScanOutcome, ScanStart};

use crate::limits::{
    DUPLICATE_WINDOW_S, HEADER_ROOM_BYTES, PUBLISH_RETRY_FOR_MS, PUBLISH_RETRY_PAUSE_MS,
    READ_RETRY_FOR_MS,
};
use crate::{region, subject};
use crate::{Nats, NatsError};

/// The stream that holds every log of the galaxy.
pub const LOGS_STREAM: &str = "MLT_LOGS";

/// Counts of what the publishes met, for tests and figures.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Publishes the stream refused because another writer had appended since (fencing):
    /// this node no longer owns the log.
    pub fenced: AtomicU64,
    /// Messages stored (each a group commit, or a piece of one).
    pub messages: AtomicU64,
    /// Attempts sent again after a lost ack or a transient failure.
    pub retries: AtomicU64,
    /// Retries the stream answered `duplicate` (it had the first attempt already).
    pub duplicates: AtomicU64,
    /// Attempts the stream answered "an earlier message is in process" (error 10164 or
    /// 10158: a retry that overtook its own first attempt), retried.
    pub in_process: AtomicU64,
    /// The first refusal by fencing, as the stream said it (subject, expected sequence).
    pub first_fenced: std::sync::Mutex<Option<String>>,
}

impl PublishStats {
    /// The first refusal by fencing, if any, for the node's last words.
    pub fn first_fenced(&self) -> Option<String> {
        self.first_fenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fence(&self, error: &NatsError) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_fenced.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| error.to_string());
    }
}

/// What the reads of logs fetched from the stream, for tests and figures (recovery's cost).
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Messages fetched, the search's probes included.
    pub messages: AtomicU64,
    /// Their payloads' bytes.
    pub bytes: AtomicU64,
    /// Messages fetched by searches for the message holding a position's record.
    pub probes: AtomicU64,
}

impl ReadStats {
    fn fetched(&self, payload_bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(payload_bytes as u64, Ordering::Relaxed);
    }
}

/// Faults to inject, for tests.
#[derive(Debug, Default)]
struct Faults {
    /// The next this many acks are dropped after they arrive, as a network would lose them.
    lost_acks: AtomicU32,
}

impl Faults {
    fn take_lost_ack(&self) -> bool {
        self.lost_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The header naming the node that published a message.
pub const NODE_HEADER: &str = "Mlt-Node";
/// The header carrying the lease epoch of the node that published a message (0: none held).
pub const EPOCH_HEADER: &str = "Mlt-Epoch";

/// The logs of a galaxy, in the stream [`LOGS_STREAM`].
pub struct NatsLogs {
    pub(crate) nats: Nats,
    pub(crate) stream: Stream,
    /// The prefix of the logs' subjects: `mlt.log.`, or `mlt.<region>.log.` in region mode
    /// (crate::region::log_prefix).
    prefix: String,
    /// The stream's name: [`LOGS_STREAM`], or a copy's (`MLT_LOGS_OF_us`).
    stream_name: String,
    /// A copy of another region's logs (crate::copies): read, never written.
    read_only: bool,
    stats: Arc<PublishStats>,
    reads: Arc<ReadStats>,
    faults: Arc<Faults>,
    /// The epoch of the lease this node holds, set once by [`NatsLogs::hold`] before any log
    /// is opened for writing: a node changes epoch only by starting again.
    epoch: std::sync::OnceLock<u64>,
    /// Set once when this unit's writes are revoked ([`Revoker`]): every log opened here
    /// refuses its next publish, and an ack that arrives after it is not passed on.
    revoked: Revoked,
}

/// Why a unit's writes were revoked, once they are (shared by its logs' writers).
type Revoked = Arc<std::sync::OnceLock<String>>;

/// Revokes the writes of one unit's logs ([`NatsLogs::for_unit`]) from another task, at once:
/// a holder that learns its unit is owned elsewhere now (a promotion re-homed its system into
/// another region) calls [`Revoker::revoke`] without waiting for the node's round, and from
/// then on no sync of those logs returns success (the publish is not sent, or its ack not
/// passed on), so nothing more is acknowledged to a player. Never undone: the unit is stopped.
#[derive(Clone, Debug)]
pub struct Revoker(Revoked);

impl Revoker {
    /// Revokes the unit's writes; `why` is said in every refusal. A second call keeps the first
    /// reason.
    pub fn revoke(&self, why: &str) {
        let _ = self.0.set(why.to_string());
    }

    /// Whether the writes are revoked.
    pub fn is_revoked(&self) -> bool {
        self.0.get().is_some()
    }
}

impl NatsLogs {
    /// Opens the logs' stream, creating it if needed: file storage, `replicas` copies (3 in a
    /// cluster), a duplicate window of [`DUPLICATE_WINDOW_S`]. An existing stream with other
    /// replicas or storage, or other subjects (a galaxy's stream without regions opened by a
    /// node of a region, or the other way round), is refused (the error names the setting).
    pub fn open(nats: &Nats, replicas: usize) -> Result<NatsLogs, NatsError> {
        assert!(replicas >= 1, "a stream has at least one replica");
        let subjects = vec![format!("{}>", region::log_prefix(nats.region()))];
        let config = Config {
            name: LOGS_STREAM.into(),
            subjects: subjects.clone(),
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_S),
            allow_direct: true,
            ..Default::default()
        };
        let js = nats.jetstream.clone();
        let stream = nats.bridge.run(async move {
            js.get_or_create_stream(config)
                .await
                .map_err(|e| NatsError::jetstream(format!("cannot open stream {LOGS_STREAM}"), e))
        })??;
        let info = stream.cached_info().config.clone();
        if info.num_replicas != replicas || info.storage != StorageType::File {
            return Err(NatsError::jetstream(
                format!("stream {LOGS_STREAM}"),
                format!(
                    "exists with {} replicas and {:?} storage; this node wants {replicas} and file storage (num_replicas, storage)",
                    info.num_replicas, info.storage
                ),
            ));
        }
        if info.subjects != subjects {
            return Err(NatsError::jetstream(
                format!("stream {LOGS_STREAM}"),
                format!(
                    "exists with subjects {:?}; this node wants {subjects:?} (a galaxy is run with regions or without, never both)",
                    info.subjects
                ),
            ));
        }
        Ok(NatsLogs {
            nats: nats.clone(),
            stream,
            prefix: region::log_prefix(nats.region()),
            stream_name: LOGS_STREAM.into(),
            read_only: false,
            stats: Arc::new(PublishStats::default()),
            reads: Arc::new(ReadStats::default()),
            faults: Arc::new(Faults::default()),
            epoch: std::sync::OnceLock::new(),
            revoked: Revoked::default(),
        })
    }

    /// From now on this node writes as the holder of the lease of epoch `epoch`: every log
    /// opened gets a `lease` record first (fenced by the sequence read at open), and every
    /// message carries the epoch in [`EPOCH_HEADER`]. Called once, right after the claim and
    /// before the logs are opened; logs opened before keep epoch 0 (asserted against here by
    /// the caller's order, not checked).
    pub fn hold(&self, epoch: u64) {
        assert!(epoch > 0, "a lease's epoch is from 1");
        let set = self.epoch.set(epoch);
        assert!(
            set.is_ok() || self.epoch.get() == Some(&epoch),
            "a node holds one lease epoch for its whole life (had {:?}, given {epoch})",
            self.epoch.get()
        );
    }

    /// The same stream, for one unit of a spread galaxy held under its own lease of epoch
    /// `epoch` (issue 19): logs opened through it get a `lease` record of that epoch first,
    /// and its publishes are counted apart (a fencing seen here is this unit's).
    pub fn for_unit(&self, epoch: u64) -> NatsLogs {
        assert!(!self.read_only, "a copy is never written");
        let unit = NatsLogs {
            nats: self.nats.clone(),
            stream: self.stream.clone(),
            prefix: self.prefix.clone(),
            stream_name: self.stream_name.clone(),
            read_only: false,
            stats: Arc::new(PublishStats::default()),
            reads: self.reads.clone(),
            faults: self.faults.clone(),
            epoch: std::sync::OnceLock::new(),
            revoked: Revoked::default(),
        };
        unit.hold(epoch);
        unit
    }

    /// The handle that revokes the writes of the logs opened through this `NatsLogs` (one
    /// unit's, from [`NatsLogs::for_unit`]): see [`Revoker`].
    pub fn revoker(&self) -> Revoker {
        Revoker(self.revoked.clone())
    }

    /// The epoch this node writes under (0: it holds no lease).
    pub fn epoch(&self) -> u64 {
        self.epoch.get().copied().unwrap_or(0)
    }

    /// Refuses (as fenced, and counted so) to take log `name` when its last message was
    /// written under an epoch newer than `epoch`.
    fn refuse_if_newer_owner(&self, name: &str, epoch: u64) -> Result<(), LogError> {
        let stream = self.stream.clone();
        let subject = self.subject_of(name);
        let last = self
            .nats
            .bridge
            .run(async move { stream.get_last_raw_message_by_subject(&subject).await })
            .map_err(|e| LogError::Read {
                path: self.shown(name),
                error: Arc::new(e.into_io()),
            })?;
        let last = match last {
            Ok(last) => last,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(()),
            Err(e) => {
                return Err(LogError::Read {
                    path: self.shown(name),
                    error: Arc::new(NatsError::jetstream("last message", e).into_io()),
                })
            }
        };
        let header = |key: &str| last.headers.get(key).map(|v| v.as_str().to_string());
        let writer_epoch: u64 = header(EPOCH_HEADER)
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        if writer_epoch <= epoch {
            return Ok(());
        }
        let error = NatsError::Fenced {
            subject: self.subject_of(name),
            expected_last_seq: last.sequence,
            detail: format!(
                "its last message was written by node {} under epoch {writer_epoch}, newer than this node's {epoch}",
                header(NODE_HEADER).unwrap_or_default()
            ),
        };
        self.stats.fence(&error);
        Err(LogError::Read {
            path: self.shown(name),
            error: Arc::new(error.into_io()),
        })
    }

    /// The lease record this node writes first to every log it opens, if it holds a lease.
    fn lease_record(&self) -> Option<LeaseRecord> {
        self.epoch.get().map(|&epoch| LeaseRecord {
            epoch,
            node: self.nats.node.clone(),
        })
    }

    /// What the publishes of the logs opened here met.
    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    /// Drops the next `acks` publish acks after they arrive (the message is stored, the writer
    /// does not learn it), so a test can see the retry deduplicated.
    pub fn simulate_lost_acks_for_tests(&self, acks: u32) {
        self.faults.lost_acks.store(acks, Ordering::SeqCst);
    }

    /// Every byte of log `name` (its messages in order), and the stream sequence of its last
    /// message (0: none).
    pub fn bytes_of(&self, name: &str) -> Result<(Vec<u8>, u64), NatsError> {
        let stream = self.stream.clone();
        let subject = self.subject_of(name);
        let reads = self.reads.clone();
        let tail = self
            .nats
            .bridge
            .run(read_tail_retrying(stream, subject, 1, reads))??;
        Ok((tail.bytes, tail.last_subject_seq))
    }

    /// How many messages log `name` has.
    pub fn messages_in(&self, name: &str) -> Result<u64, NatsError> {
        let stream = self.stream.clone();
        let subject = self.subject_of(name);
        self.nats.bridge.run(async move {
            let info = stream
                .info_with_subjects(&subject)
                .await
                .map_err(|e| NatsError::jetstream(format!("subjects of {LOGS_STREAM}"), e))?;
            let counts: Vec<(String, usize)> = info
                .try_collect()
                .await
                .map_err(|e| NatsError::jetstream(format!("subjects of {LOGS_STREAM}"), e))?;
            Ok(counts
                .into_iter()
                .filter(|(s, _)| *s == subject)
                .map(|(_, n)| n as u64)
                .sum())
        })?
    }

    fn shown(&self, name: &str) -> String {
        format!("nats:{}/{}", self.stream_name, self.subject_of(name))
    }

    /// The subject of log `name` in this stream.
    pub fn subject_of(&self, name: &str) -> String {
        subject::of_log_with(&self.prefix, name)
    }

    /// The log name of `subject`, if it is one of this stream's logs.
    pub fn name_of(&self, subject: &str) -> Option<String> {
        subject::to_log_with(&self.prefix, subject)
    }

    /// The prefix of this stream's log subjects (`mlt.log.`, `mlt.eu.log.`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream's name ([`LOGS_STREAM`], or a copy's).
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The copy, in this node's region, of region `region`'s logs (stream
    /// `MLT_LOGS_OF_<region>`, made by crate::copies): read-only, its subjects under
    /// `region`'s prefix. Refused if the copy does not exist.
    pub fn open_copy(nats: &Nats, region: &str) -> Result<NatsLogs, NatsError> {
        let name = region::copy_name(LOGS_STREAM, region);
        let js = nats.jetstream.clone();
        let what = format!("cannot open the copy {name} of region {region}'s logs (made by `mltrader region status` or crate::copies)");
        let stream_name = name.clone();
        let stream = nats.bridge.run(async move {
            js.get_stream(&stream_name)
                .await
                .map_err(|e| NatsError::jetstream(what, e))
        })??;
        Ok(NatsLogs {
            nats: nats.clone(),
            stream,
            prefix: region::log_prefix(Some(region)),
            stream_name: name,
            read_only: true,
            stats: Arc::new(PublishStats::default()),
            reads: Arc::new(ReadStats::default()),
            faults: Arc::new(Faults::default()),
            epoch: std::sync::OnceLock::new(),
            revoked: Revoked::default(),
        })
    }

    /// Whether this is a copy (never written).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What the reads of logs fetched from the stream.
    pub fn read_stats(&self) -> &ReadStats {
        &self.reads
    }

    /// The logs' stream, for the other read paths of this crate (crate::export).
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The connection, for the other read paths of this crate.
    pub(crate) fn nats(&self) -> &Nats {
        &self.nats
    }

    /// The bytes of log `name` from where a read at `from` starts, that start, and what the
    /// writer needs: the subject's last stream sequence and its stored length.
    ///
    /// From a snapshot's position (`from.next_seq > 1`), only the messages from the one holding
    /// record `from.next_seq` on are fetched ([`read_tail`]), and the scan starts at that
    /// record's line, at `from`'s offset and line. Otherwise (and whenever the search cannot
    /// place the record: a log shorter than the position, or a damaged line, which the scan
    /// then reports) the whole subject is read, as a file is.
    fn stored_from(&self, name: &str, from: Position) -> Result<Stored, LogError> {
        let stream = self.stream.clone();
        let subject = self.subject_of(name);
        let reads = self.reads.clone();
        let tail = self
            .nats
            .bridge
            .run(read_tail_retrying(stream, subject, from.next_seq, reads))
            .and_then(|r| r)
            .map_err(|e| LogError::Read {
                path: self.shown(name),
                error: Arc::new(e.into_io()),
            })?;
        if tail.from_record {
            assert!(
                from.next_seq > 1,
                "a search is only made from a snapshot's position"
            );
            return Ok(Stored {
                stored_bytes: from.offset + tail.bytes.len() as u64,
                bytes: tail.bytes,
                start: ScanStart {
                    offset: from.offset,
                    line: from.line,
                    expect_seq: Some(from.next_seq),
                },
                last_subject_seq: tail.last_subject_seq,
            });
        }
        let all = tail.bytes;
        let (offset, start) = read_start(&all, &self.shown(name), from)?;
        Ok(Stored {
            stored_bytes: all.len() as u64,
            bytes: all[offset..].to_vec(),
            start,
            last_subject_seq: tail.last_subject_seq,
        })
    }
}

/// A log's stored bytes as a read found them.
struct Stored {
    bytes: Vec<u8>,
    start: ScanStart,
    last_subject_seq: u64,
    stored_bytes: u64,
}

impl LogStore for NatsLogs {
    fn open(
        &self,
        name: &str,
        from: Position,
        visit: Visit<'_>,
    ) -> Result<(Log, Opened), LogError> {
        if self.read_only {
            return Err(LogError::Read {
                path: self.shown(name),
                error: Arc::new(std::io::Error::other(
                    "a copy of another region's logs is read-only: promote the region to write it",
                )),
            });
        }
        let stored = self.stored_from(name, from)?;
        let max_message_bytes = self
            .nats
            .max_payload_bytes()
            .saturating_sub(HEADER_ROOM_BYTES);
        if max_message_bytes < MAX_RECORD_BYTES {
            return Err(LogError::Read {
                path: self.shown(name),
                error: Arc::new(std::io::Error::other(format!(
                    "the server's max_payload ({} bytes) cannot hold a record of {MAX_RECORD_BYTES} bytes and the headers: raise max_payload",
                    self.nats.max_payload_bytes()
                ))),
            });
        }
        let file = JetStreamFile {
            nats: self.nats.clone(),
            subject: self.subject_of(name),
            last_subject_seq: stored.last_subject_seq,
            stored_bytes: stored.stored_bytes,
            writer_id: writer_id(),
            batches: 0,
            buffered: Vec::new(),
            max_message_bytes,
            node: self.nats.node.clone(),
            epoch: self.epoch(),
            stats: self.stats.clone(),
            faults: self.faults.clone(),
            revoked: self.revoked.clone(),
        };
        let handle: Box<dyn AppendFile> = Box::new(file);
        let (log, opened) = Log::open_over(
            self.shown(name),
            &stored.bytes,
            stored.start,
            || Ok(handle),
            visit,
        )?;
        if let Some(lease) = self.lease_record() {
            // A newer owner wrote this log already (this node's claim expired while it was
            // paused between its claim and this read): its expected sequence would match, so
            // only the writer's epoch on the log's last message tells. Refuse, as fencing would.
            self.refuse_if_newer_owner(name, lease.epoch)?;
            // First thing after the read, with the sequence the read found: if anyone wrote
            // since, this is refused and the node must not serve the log.
            let seq = log.append(LEASE_KIND, |line| lease.encode(line))?;
            log.wait_durable(seq)?;
        }
        Ok((log, opened))
    }

    fn read(&self, name: &str, from: Position, visit: Visit<'_>) -> Result<ScanOutcome, LogError> {
        let stored = self.stored_from(name, from)?;
        scan(&stored.bytes, stored.start, visit).map_err(|corruption| LogError::Corrupt {
            path: self.shown(name),
            corruption,
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, LogError> {
        let stream = self.stream.clone();
        let filter = format!("{}>", self.prefix);
        let subjects = self.nats.bridge.run(async move {
            let info = stream.info_with_subjects(&filter).await?;
            info.try_collect::<Vec<(String, usize)>>().await
        });
        let subjects = subjects
            .and_then(|r| r.map_err(|e| NatsError::jetstream("cannot list subjects", e)))
            .map_err(|e| LogError::Read {
                path: format!("nats:{}", self.stream_name),
                error: Arc::new(e.into_io()),
            })?;
        let mut names: Vec<String> = subjects
            .into_iter()
            .filter_map(|(s, _)| self.name_of(&s))
            .filter(|n| {
                n.strip_prefix(prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A new writer's id: random, so that two writers of one log (an owner and a zombie) never
/// share a message id (the stream would answer one's publish as a duplicate of the other's).
fn writer_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A subject's bytes as [`read_tail`] fetched them.
struct Tail {
    /// From record `next_seq`'s line on if `from_record`, else every byte of the subject.
    bytes: Vec<u8>,
    from_record: bool,
    /// The stream sequence of the subject's last message (0: none).
    last_subject_seq: u64,
}

/// [`read_tail`], tried again on a failure of the stream (a request timing out while a leader
/// is elected, or just after the stream was created) for up to [`READ_RETRY_FOR_MS`]; a
/// message that is not whole lines is final.
async fn read_tail_retrying(
    stream: Stream,
    subject: String,
    next_seq: u64,
    reads: Arc<ReadStats>,
) -> Result<Tail, NatsError> {
    let started = Instant::now();
    loop {
        match read_tail(stream.clone(), subject.clone(), next_seq, reads.clone()).await {
            Err(e @ NatsError::JetStream { .. })
                if started.elapsed() < Duration::from_millis(READ_RETRY_FOR_MS) =>
            {
                tracing::debug!("{subject}: read failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_PAUSE_MS)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The bytes of `subject` from record `next_seq` on: the subject's last stream sequence is
/// read from the stream leader; for `next_seq > 1`, [`find_message`] finds the message holding
/// record `next_seq` (or ending just before it), and only it and the messages after it are
/// fetched. When it cannot be placed, every message is fetched (`from_record` false) and the
/// caller's scan says what is wrong.
async fn read_tail(
    stream: Stream,
    subject: String,
    next_seq: u64,
    reads: Arc<ReadStats>,
) -> Result<Tail, NatsError> {
    let last = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => message.sequence,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            return Ok(Tail {
                bytes: Vec::new(),
                from_record: false,
                last_subject_seq: 0,
            })
        }
        Err(e) => {
            return Err(NatsError::jetstream(
                format!("last message of {subject}"),
                e,
            ))
        }
    };
    if next_seq > 1 {
        if let Some((at, payload)) = find_message(&stream, &subject, next_seq, last, &reads).await?
        {
            if let Some(cut) = line_of_record(&payload, next_seq) {
                let mut bytes = payload[cut..].to_vec();
                if at < last {
                    bytes.extend(read_messages(&stream, &subject, at + 1, last, &reads).await?);
                }
                return Ok(Tail {
                    bytes,
                    from_record: true,
                    last_subject_seq: last,
                });
            }
        }
    }
    Ok(Tail {
        bytes: read_messages(&stream, &subject, 1, last, &reads).await?,
        from_record: false,
        last_subject_seq: last,
    })
}

/// The subject's last message (stream sequence and payload) whose first record is at most
/// `record`, found by a binary search over stream sequences up to `last`, each probe the
/// subject's first message at or after a sequence, read at the stream leader. Records grow
/// with stream sequences within a subject, so the search is sound; it fetches about
/// log2(`last`) messages. None when the subject's first record is after `record` (or a first
/// line does not parse: the full read reports it).
async fn find_message(
    stream: &Stream,
    subject: &str,
    record: u64,
    last: u64,
    reads: &ReadStats,
) -> Result<Option<(u64, Vec<u8>)>, NatsError> {
    let probe = |from: u64| async move {
        let message = stream
            .get_first_raw_message_by_subject(subject, from)
            .await
            .map_err(|e| NatsError::jetstream(format!("reading {subject} at {from}"), e))?;
        reads.fetched(message.payload.len());
        reads.probes.fetch_add(1, Ordering::Relaxed);
        let first = first_record(&message.payload);
        Ok::<_, NatsError>((message.sequence, first, message.payload.to_vec()))
    };
    let (mut lo, first, mut best) = probe(1).await?;
    if first.is_none_or(|f| f > record) {
        return Ok(None);
    }
    let mut hi = last;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let (at, first, payload) = probe(mid).await?;
        assert!(
            at >= mid && at <= last,
            "{subject}: probe at {mid} found {at}"
        );
        match first {
            Some(f) if f <= record => {
                lo = at;
                best = payload;
            }
            Some(_) => hi = mid - 1,
            None => return Ok(None),
        }
    }
    Ok(Some((lo, best)))
}

/// The sequence number of the first record of a message.
fn first_record(payload: &[u8]) -> Option<u64> {
    let line = payload.split_inclusive(|b| *b == b'\n').next()?;
    parse_line(line).ok().map(|r| r.seq)
}

/// Where record `record`'s line starts in `payload`, a message of whole lines whose first
/// record is at most `record`: its offset, or the payload's length when its last record is
/// `record - 1` (the record is the next message's first, or not written yet). None when the
/// payload does not hold the record or end just before it, or a line does not parse.
fn line_of_record(payload: &[u8], record: u64) -> Option<usize> {
    let mut offset = 0;
    let mut last = None;
    for line in payload.split_inclusive(|b| *b == b'\n') {
        let seq = parse_line(line).ok()?.seq;
        if seq == record {
            return Some(offset);
        }
        offset += line.len();
        last = Some(seq);
    }
    (last == Some(record - 1)).then_some(offset)
}

/// The messages of `subject` from stream sequence `from` to `last`, in order, concatenated,
/// through an ordered consumer.
async fn read_messages(
    stream: &Stream,
    subject: &str,
    from: u64,
    last: u64,
    reads: &ReadStats,
) -> Result<Vec<u8>, NatsError> {
    let mut bytes = Vec::new();
    visit_messages(stream, subject, from, last, |_, message| {
        reads.fetched(message.payload.len());
        bytes.extend_from_slice(&message.payload);
        Next::More
    })
    .await?;
    Ok(bytes)
}

/// Whether [`visit_messages`] goes on to the next message.
pub(crate) enum Next {
    More,
    Stop,
}

/// Hands the messages of `subject` from stream sequence `from` to `last` to `visit`, in order,
/// with their stream sequences, through an ordered consumer, until `visit` says stop or the
/// message at `last` was handed. Every message handed holds whole lines (else the read fails:
/// a stream never tears a record). The one read path of the logs' subjects: recovery's
/// (`read_messages`) and export's (`NatsLogs::messages_after`).
pub(crate) async fn visit_messages(
    stream: &Stream,
    subject: &str,
    from: u64,
    last: u64,
    mut visit: impl FnMut(u64, &async_nats::jetstream::Message) -> Next,
) -> Result<(), NatsError> {
    assert!(
        from >= 1 && from <= last,
        "{subject}: a read from {from} to {last}"
    );
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::jetstream(format!("cannot read {subject}"), e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| NatsError::jetstream(format!("cannot read {subject}"), e))?;
    let mut seen = from - 1;
    while seen < last {
        let message = messages
            .next()
            .await
            .ok_or_else(|| NatsError::jetstream(format!("reading {subject}"), "ended early"))?
            .map_err(|e| NatsError::jetstream(format!("reading {subject}"), e))?;
        let stream_seq = message
            .info()
            .map_err(|e| NatsError::jetstream(format!("reading {subject}"), e))?
            .stream_sequence;
        if stream_seq <= seen {
            // async-nats recreates an ordered consumer that had delivered nothing yet (after a
            // missed heartbeat) from the stream's start, whatever its start sequence was
            // (`recreate_ordered_consumer`: sequence 0 means `DeliverPolicy::All`): seen here
            // under load. What comes before `from` again is skipped.
            continue;
        }
        if stream_seq > last {
            // The subject has no message between `seen` and `last` (a read bounded below the
            // subject's end): the next one is not this read's.
            break;
        }
        if !message.payload.ends_with(b"\n") {
            return Err(NatsError::NotWholeLines {
                subject: subject.to_string(),
                stream_seq,
            });
        }
        seen = stream_seq;
        if let Next::Stop = visit(stream_seq, &message) {
            break;
        }
    }
    Ok(())
}

/// A log's subject as the committer's file: `append` buffers, `sync` publishes (fenced,
/// deduplicated) and waits for the ack.
pub struct JetStreamFile {
    nats: Nats,
    subject: String,
    /// The stream sequence of the subject's last message as this writer knows it (0: none):
    /// the expected last sequence of its next publish.
    last_subject_seq: u64,
    /// Bytes the subject holds (its messages' lengths summed).
    stored_bytes: u64,
    writer_id: String,
    /// Batches published by this writer (numbers its message ids).
    batches: u64,
    /// Appended, not yet published.
    buffered: Vec<u8>,
    /// The largest message body sent: the server's max_payload less room for headers.
    max_message_bytes: usize,
    /// This node's name and lease epoch, in every message's headers.
    node: String,
    epoch: u64,
    stats: Arc<PublishStats>,
    faults: Arc<Faults>,
    /// Its unit's writes revoked: checked before each publish and after each ack.
    revoked: Revoked,
}

impl AppendFile for JetStreamFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buffered.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        assert!(
            self.buffered.ends_with(b"\n"),
            "the committer syncs whole records only"
        );
        self.batches += 1;
        let batch = std::mem::take(&mut self.buffered);
        for (piece_number, piece) in pieces(&batch, self.max_message_bytes).enumerate() {
            self.refuse_if_revoked()?;
            let id = format!("{}.{}.{piece_number}", self.writer_id, self.batches);
            let sequence = self
                .publish(id, piece.to_vec())
                .map_err(NatsError::into_io)?;
            // Revoked while the publish was on its way: stored, but not acknowledged to
            // anyone (the log's committer keeps this error, so no record of it is durable).
            self.refuse_if_revoked()?;
            assert!(
                sequence > self.last_subject_seq,
                "a stream's sequence only grows"
            );
            self.last_subject_seq = sequence;
            self.stored_bytes += piece.len() as u64;
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        if len == self.stored_bytes {
            return Ok(());
        }
        Err(std::io::Error::other(format!(
            "{}: a stream's messages cannot be cut (asked to cut at byte {len} of {}); they hold whole records, so a torn tail here is corruption",
            self.subject, self.stored_bytes
        )))
    }
}

impl JetStreamFile {
    /// An error (counted as a fencing) once the unit's writes are revoked.
    fn refuse_if_revoked(&self) -> std::io::Result<()> {
        let Some(why) = self.revoked.get() else {
            return Ok(());
        };
        let error = NatsError::Revoked {
            subject: self.subject.clone(),
            why: why.clone(),
        };
        self.stats.fence(&error);
        Err(error.into_io())
    }

    /// Publishes one message and returns its stream sequence.
    fn publish(&self, id: String, body: Vec<u8>) -> Result<u64, NatsError> {
        let attempt = Attempt {
            js: self.nats.jetstream.clone(),
            subject: self.subject.clone(),
            id,
            expected_last_seq: self.last_subject_seq,
            node: self.node.clone(),
            epoch: self.epoch,
            body,
            stats: self.stats.clone(),
            faults: self.faults.clone(),
        };
        self.nats.bridge.run(attempt.until_acked())?
    }
}

/// One message to publish, as many times as it takes.
struct Attempt {
    js: Context,
    subject: String,
    id: String,
    expected_last_seq: u64,
    node: String,
    epoch: u64,
    body: Vec<u8>,
    stats: Arc<PublishStats>,
    faults: Arc<Faults>,
}

impl Attempt {
    /// Sends the message until the stream acks it, for at most [`PUBLISH_RETRY_FOR_MS`]: a
    /// lost ack or a transient failure (a leader's election) is retried with the same id and
    /// expected sequence; a refused expected sequence (fencing) is never retried.
    async fn until_acked(self) -> Result<u64, NatsError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let publish = PublishMessage::build()
                .payload(self.body.clone().into())
                .message_id(&self.id)
                .expected_last_subject_sequence(self.expected_last_seq)
                .header(NODE_HEADER, self.node.as_str())
                .header(EPOCH_HEADER, self.epoch.to_string().as_str());
            let outcome = match self.js.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let outcome = match outcome {
                Ok(_) if self.faults.take_lost_ack() => Err(Failure::Lost),
                Ok(ack) => Ok(ack),
                Err(e) => Err(Failure::Publish(e)),
            };
            let failure = match outcome {
                Ok(ack) => return self.acked(ack, attempts),
                Err(Failure::Publish(e)) if crate::error::is_wrong_last_sequence(&e) => {
                    let error = NatsError::Fenced {
                        subject: self.subject.clone(),
                        expected_last_seq: self.expected_last_seq,
                        detail: e.to_string(),
                    };
                    self.stats.fence(&error);
                    return Err(error);
                }
                Err(Failure::Publish(e)) if crate::error::is_in_process(&e) => {
                    self.stats.in_process.fetch_add(1, Ordering::Relaxed);
                    Failure::Publish(e)
                }
                Err(Failure::Publish(e))
                    if matches!(
                        e.kind(),
                        PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::WrongLastMessageId
                    ) =>
                {
                    return Err(self.failed(attempts, started, e.to_string()))
                }
                Err(failure) => failure,
            };
            if started.elapsed() >= Duration::from_millis(PUBLISH_RETRY_FOR_MS) {
                return Err(self.failed(attempts, started, failure.to_string()));
            }
            tracing::debug!(
                "{}: publish attempt {attempts}: {failure}; retrying",
                self.subject
            );
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_PAUSE_MS)).await;
        }
    }

    /// The stream stored the message (or had it already, for a retry).
    fn acked(
        &self,
        ack: async_nats::jetstream::publish::PublishAck,
        attempts: u32,
    ) -> Result<u64, NatsError> {
        if ack.duplicate && attempts == 1 {
            // Ids are this writer's random id and its batch number: nobody else sends this id.
            return Err(NatsError::jetstream(
                format!("publish to {}", self.subject),
                format!(
                    "message id {} was already in the stream (sequence {}) before this writer sent it",
                    self.id, ack.sequence
                ),
            ));
        }
        assert!(
            ack.sequence > self.expected_last_seq,
            "{}: acked at sequence {} after expecting last {}",
            self.subject,
            ack.sequence,
            self.expected_last_seq
        );
        if ack.duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ack.sequence)
    }

    fn failed(&self, attempts: u32, started: Instant, reason: String) -> NatsError {
        NatsError::Publish {
            subject: self.subject.clone(),
            attempts,
            elapsed_ms: started.elapsed().as_millis(),
            reason,
        }
    }
}

/// Why one attempt did not get an ack.
enum Failure {
    /// The ack arrived and was dropped ([`NatsLogs::simulate_lost_acks_for_tests`]).
    Lost,
    Publish(async_nats::jetstream::context::PublishError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Lost => write!(f, "ack lost (simulated)"),
            Failure::Publish(e) => write!(f, "{e}"),
        }
    }
}

/// `batch` cut at line ends into pieces of at most `max_bytes` (a single line longer than that
/// is a piece of its own: the caller ensures records fit).
fn pieces(batch: &[u8], max_bytes: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        for line in rest.split_inclusive(|b| *b == b'\n') {
            if end > 0 && end + line.len() > max_bytes {
                break;
            }
            end += line.len();
        }
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_lines_within_the_limit() {
        let batch = b"aaaa\nbb\ncccccc\nd\n";
        let cut: Vec<&[u8]> = pieces(batch, 8).collect();
        assert_eq!(cut, vec![&b"aaaa\nbb\n"[..], b"cccccc\n", b"d\n"]);
        let whole: Vec<&[u8]> = pieces(batch, 1 << 20).collect();
        assert_eq!(whole, vec![&batch[..]], "a batch that fits is one message");
        let long: Vec<&[u8]> = pieces(b"toolongline\nx\n", 4).collect();
        assert_eq!(long, vec![&b"toolongline\n"[..], b"x\n"]);
    }
}
