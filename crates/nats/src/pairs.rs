//! The pair subjects of issue 19 over NATS JetStream: [`NatsLinks`] is mesh's [`Links`], the
//! carrier of committed jumps from a unit (a star system with its instances) to a unit that
//! may be served by another node, on the subject `mlt.jump.<from>.<to>` ([`subject::of_pair`])
//! of the stream [`JUMPS_STREAM`] (docs/NATS.md "Pair subjects", docs/PROTOCOL.md "Across
//! nodes").
//!
//! Writing (the origin's node) carries out the rules of `mesh::protocol::handover::Outbox`:
//! - a message is one record line: the jump as the transition log writes it
//!   (`mesh::codec::encode_jump`, its `seq` field 0: a pair subject's position is the stream
//!   sequence), or a `lease` record ([`LeaseRecord`]), the fence mark of a new owner;
//! - every message carries `Nats-Msg-Id` (a jump's transfer id, `handover::msg_id`: a retry or a
//!   new owner's republish is answered `duplicate`), [`NODE_HEADER`], [`EPOCH_HEADER`], and the
//!   expected last subject sequence as this writer knows it (`handover::publish_fence`);
//! - one publish in flight per pair at any time (an async mutex per pair: the instances of one
//!   system share its pairs), so a pair holds an origin's jumps in the order they were handed;
//! - a `duplicate` answer is never learnt as the subject's last (the stored copy may be a newer
//!   owner's republish: PROTOCOL.md "Across nodes" step 4); a refused expected sequence (10071)
//!   is judged by the subject's last message: written under a newer epoch, this node is fenced
//!   ([`LinkError::Fenced`]); under its own or an older one, it learns that sequence and
//!   publishes again. "In process" answers and timeouts are retried with the same message id
//!   for [`PAIR_PUBLISH_RETRY_FOR_MS`], then [`LinkError::Unavailable`].
//!
//! Reading (the destination's node): one ordered consumer per lane into the unit, from the
//! position after the one the caller's snapshot recorded, live (it waits for new messages),
//! decoding each message into [`Arrived`] in stream order; lease marks are skipped, anything
//! else is [`LinkError::Malformed`] naming the subject and the sequence. An ordered consumer
//! and not a loop of direct gets: the server pushes each new message as it is stored (a loop
//! would poll, paying a request per message and a pause between polls for latency), and the
//! client re-creates it by itself after missed heartbeats (a leader's election, within about
//! twice [`PAIR_READ_EXPIRES_MS`]); when it fails anyway, or stays silent for a whole
//! [`PAIR_READ_STALL_CHECK_MS`] while its subject holds more (the watchdog), the reader
//! creates a new one from the last position it delivered, for as long as its sink is open. A
//! position past the subject's last message is refused before anything is read.
//!
//! Never decides a game rule, never lands, aborts or reorders a jump, never publishes without an
//! expected last subject sequence (outside the simulator's bug switch), and never runs on nor
//! blocks the caller's tokio workers: every request runs on the [`crate::Bridge`]'s runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, LastRawMessageErrorKind, StorageType, Stream};
use futures_util::StreamExt;
use mesh::codec::{decode_jump, encode_jump, Jump};
use mesh::links::{ArrivalSink, Arrived, LinkError, LinkFuture, Links};
use mesh::protocol::handover::{msg_id, publish_fence, Pair, PairSeq};
use sim::galaxy::{Galaxy, SystemId};
use store::lease::{LeaseRecord, LEASE_KIND};
use store::record::{is_bare, parse_line, Line, MAX_RECORD_BYTES};

use crate::error::{is_in_process, is_wrong_last_sequence};
use crate::export::{EpochCheck, StoredMessage};
use crate::limits::{
    DUPLICATE_WINDOW_S, HEADER_ROOM_BYTES, PAIR_PUBLISH_RETRY_FOR_MS, PAIR_READ_EXPIRES_MS,
    PAIR_READ_MAX_PAUSE_MS, PAIR_READ_STALL_CHECK_MS, PAIR_READ_WARN_EVERY_MS, PAIR_RETRY_PAUSE_MS,
};
use crate::logs::{visit_messages, Next, EPOCH_HEADER, NODE_HEADER};
use crate::{region, subject};
use crate::{Nats, NatsError};

/// The stream that holds every pair subject of the galaxy.
pub const JUMPS_STREAM: &str = "MLT_JUMPS";

/// The kind of a jump's record line, as the transition log writes it (`decode_jump` checks it).
pub const JUMP_KIND: &str = "jump";

/// Counts of what the pair subjects met on this node, for tests and figures.
#[derive(Debug, Default)]
pub struct PairStats {
    /// Jumps stored by this node's publishes.
    pub stored: AtomicU64,
    /// Publishes answered `duplicate` (a retry after a lost ack, a republish at takeover).
    pub duplicates: AtomicU64,
    /// Publishes refused for a stale expected sequence whose subject's last message was of this
    /// writer's epoch or older: the writer learnt the sequence and published again.
    pub resynced: AtomicU64,
    /// Publishes and fences refused because a newer epoch wrote the subject: fencing.
    pub fenced: AtomicU64,
    /// Attempts sent again after a lost ack, a timeout, an "in process" answer or an error of
    /// the stream.
    pub retries: AtomicU64,
    /// Of those, the attempts answered "an earlier message is in process" (10164, 10158).
    pub in_process: AtomicU64,
    /// Publishes given up after [`PAIR_PUBLISH_RETRY_FOR_MS`] (`Unavailable`).
    pub unavailable: AtomicU64,
    /// Fence marks (`lease` records) stored.
    pub marks: AtomicU64,
    /// Jumps the readers sent to their sinks.
    pub delivered: AtomicU64,
    /// Fence marks the readers skipped.
    pub marks_skipped: AtomicU64,
    /// Consumers the readers created (one per pair, and one more each time one failed).
    pub consumers: AtomicU64,
    /// Consumers replaced by the watchdog: silent for a check period with messages to deliver.
    pub stalls: AtomicU64,
    /// The watchdog's requests for a subject's last sequence (one per idle pair per period).
    pub stall_checks: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Faults to inject, for tests.
#[derive(Debug, Default)]
struct Faults {
    /// The next this many publish acks are dropped after they arrive (the message is stored,
    /// the writer does not learn it), as a network would lose them.
    lost_acks: AtomicU32,
    /// A pause, in milliseconds, between a fence's read of the subject's last message and its
    /// mark's publish: a test makes another writer get in between.
    fence_pause_ms: AtomicU64,
}

impl Faults {
    fn take_lost_ack(&self) -> bool {
        self.lost_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The jumps between units on pair subjects: mesh's [`Links`] over JetStream. Cheap to share
/// behind an `Arc`; its tasks run on the connection's runtime.
pub struct NatsLinks {
    shared: Arc<Shared>,
}

/// What the calls and the tasks they start share.
struct Shared {
    nats: Nats,
    stream: Stream,
    galaxy: Arc<Galaxy>,
    /// This node's name, in [`NODE_HEADER`] and in its fence marks.
    node: String,
    /// Each pair's writer state, behind a tokio mutex held for a whole publish (its retries
    /// included): one publish in flight per pair. The map itself is behind a std mutex, held
    /// only to find or add an entry, never across an await.
    writers: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<PairWriter>>>>,
    /// Region mode (issue 20): each system's home region (slug to region), which picks a
    /// pair subject's prefix (`mlt.<destination's home>.jump.`); empty without regions. Changed
    /// by a re-homing ([`NatsLinks::set_home`]). A std lock, held only to read or replace.
    homes: std::sync::RwLock<HashMap<String, String>>,
    /// The jumps' streams of other regions (the same name in their domains), looked up on
    /// first use: a writer towards a system homed there reads its pair subject's last message
    /// there. A std mutex, never held across an await.
    remote: Mutex<HashMap<String, Stream>>,
    stats: PairStats,
    faults: Faults,
}

/// What this node knows of one pair subject as a writer.
#[derive(Debug, Default)]
struct PairWriter {
    /// The stream sequence of the subject's last message as this writer knows it: the expected
    /// last sequence of its next publish. None: not read yet (read before the first publish).
    known_last: Option<PairSeq>,
    /// The highest epoch this node fenced the pair with: a publish under an older epoch is
    /// refused here without asking the stream.
    fenced_at: u64,
    /// Region mode: the epoch of a fence deferred because the pair subject lives in another
    /// region (`fence_outgoing` does not wait for the link): written before the pair's next
    /// publish. 0: none owed.
    owed_fence: u64,
    /// The subject `known_last` and `fenced_at` are of (None: none yet). A promotion re-homes
    /// a pair's destination (`NatsLinks::set_home`): its subject then lives in another
    /// region's stream, whose sequences are not the old one's, and which this node never
    /// fenced ([`PairWriter::follow`]).
    subject: Option<String>,
}

impl PairWriter {
    /// Makes this writer's knowledge that of `subject`: when the pair's subject changed (its
    /// destination re-homed), the last sequence is read again before the next publish, and the
    /// fence this node wrote on the old subject is owed on the new one (written first).
    fn follow(&mut self, subject: &str) {
        match &self.subject {
            Some(known) if known == subject => {}
            Some(_) => {
                self.known_last = None;
                self.owed_fence = self.owed_fence.max(self.fenced_at);
                self.fenced_at = 0;
                self.subject = Some(subject.to_string());
            }
            None => self.subject = Some(subject.to_string()),
        }
    }
}

/// The subject's last message, as the stream leader says.
#[derive(Debug)]
struct LastMessage {
    /// Its stream sequence (0: the subject has none).
    seq: PairSeq,
    /// The epoch its writer held ([`EPOCH_HEADER`]; 0 when absent).
    epoch: u64,
    /// Its writer ([`NODE_HEADER`]).
    node: String,
}

/// What the stream answered a publish it took.
enum Answer {
    Stored(PairSeq),
    Duplicate(PairSeq),
}

/// Why one attempt at a publish did not get an answer the writer can act on.
enum Refused {
    /// Error 10071: the subject's last sequence is not the one expected.
    WrongLast(String),
    /// Anything to try again with the same message id: a lost ack, a timeout, an "in
    /// process" answer, an election.
    Retry(String),
}

impl NatsLinks {
    /// Opens the jumps' stream, creating it if needed: subjects `mlt.jump.>`, file storage,
    /// `replicas` copies (3 in a cluster), the logs' duplicate window, direct gets allowed. An
    /// existing stream with other replicas, storage or subjects is refused (the error names the
    /// setting). `node` names this node in every message; it must be a bare word (letters,
    /// digits, `_.:/+@-`) since fence marks carry it as a record field. Blocks: call it at start.
    pub fn open(
        nats: &Nats,
        galaxy: Arc<Galaxy>,
        replicas: usize,
        node: &str,
    ) -> Result<NatsLinks, NatsError> {
        assert!(replicas >= 1, "a stream has at least one replica");
        if !is_bare(node) {
            return Err(NatsError::jetstream(
                format!("pair subjects of node {node:?}"),
                "a node's name is written in fence marks: letters, digits and _.:/+@- only, not empty",
            ));
        }
        let subjects = vec![format!("{}>", region::jump_prefix(nats.region()))];
        let config = Config {
            name: JUMPS_STREAM.into(),
            subjects: subjects.clone(),
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_S),
            allow_direct: true,
            ..Default::default()
        };
        let js = nats.jetstream.clone();
        let stream = nats.bridge.run(async move {
            // Nodes starting together on a new cluster each create it: a request may time out
            // while another's creation is under way (seen here and by `serve --nats`).
            let started = Instant::now();
            loop {
                match js.get_or_create_stream(config.clone()).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) if started.elapsed() < Duration::from_millis(PAIR_PUBLISH_RETRY_FOR_MS) => {
                        tracing::debug!("cannot open stream {JUMPS_STREAM} yet: {e}; again");
                        tokio::time::sleep(Duration::from_millis(PAIR_RETRY_PAUSE_MS)).await;
                    }
                    Err(e) => {
                        return Err(NatsError::jetstream(
                            format!("cannot open stream {JUMPS_STREAM} (tried for {PAIR_PUBLISH_RETRY_FOR_MS} ms)"),
                            e,
                        ))
                    }
                }
            }
        })??;
        let found = stream.cached_info().config.clone();
        if found.num_replicas != replicas
            || found.storage != StorageType::File
            || found.subjects != subjects
        {
            return Err(NatsError::jetstream(
                format!("stream {JUMPS_STREAM}"),
                format!(
                    "exists with {} replicas, {:?} storage and subjects {:?}; this node wants {replicas}, file storage and {subjects:?} (num_replicas, storage, subjects)",
                    found.num_replicas, found.storage, found.subjects
                ),
            ));
        }
        let max_body = nats.max_payload_bytes().saturating_sub(HEADER_ROOM_BYTES);
        if max_body < MAX_RECORD_BYTES {
            return Err(NatsError::jetstream(
                format!("stream {JUMPS_STREAM}"),
                format!(
                    "the server's max_payload ({} bytes) cannot hold a jump of {MAX_RECORD_BYTES} bytes and its headers: raise max_payload",
                    nats.max_payload_bytes()
                ),
            ));
        }
        Ok(NatsLinks {
            shared: Arc::new(Shared {
                nats: nats.clone(),
                stream,
                galaxy,
                node: node.to_string(),
                writers: Mutex::new(HashMap::new()),
                homes: std::sync::RwLock::new(HashMap::new()),
                remote: Mutex::new(HashMap::new()),
                stats: PairStats::default(),
                faults: Faults::default(),
            }),
        })
    }

    /// What the publishes and readers of this node met.
    pub fn stats(&self) -> &PairStats {
        &self.shared.stats
    }

    /// Drops the next `acks` publish acks after they arrive (the message is stored, the writer
    /// does not learn it), so a test can see the retries deduplicated.
    pub fn simulate_lost_acks_for_tests(&self, acks: u32) {
        self.shared.faults.lost_acks.store(acks, Ordering::SeqCst);
    }

    /// Pauses every fence mark for `pause` between the read of its subject's last message and
    /// its publish, so a test can make another writer get in between (the race a fence must
    /// lose safely).
    pub fn simulate_slow_fence_for_tests(&self, pause: Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .faults
            .fence_pause_ms
            .store(ms, Ordering::SeqCst);
    }

    /// Region mode: every system's home region (slug to region name), replacing what was
    /// known. Call it after [`NatsLinks::open`] and before any jump when the connection is a
    /// region's ([`Nats::connect_in_region`]); every system of the galaxy must have one.
    pub fn set_homes(&self, homes: HashMap<String, String>) {
        assert!(
            self.shared.nats.region().is_some(),
            "homes are for a node of a region"
        );
        for id in self.shared.galaxy.ids() {
            let slug = self.shared.galaxy.slug(id);
            let home = homes
                .get(slug)
                .unwrap_or_else(|| panic!("system {slug} has no home region"));
            assert!(region::is_region_name(home), "{home:?} is a region name");
        }
        *self.shared.homes.write().unwrap_or_else(|e| e.into_inner()) = homes;
    }

    /// Region mode: system `slug` is now homed in `region` (a promotion re-homed it): jumps
    /// towards it from now on go to `mlt.<region>.jump.…`.
    pub fn set_home(&self, slug: &str, region: &str) {
        assert!(
            region::is_region_name(region),
            "{region:?} is a region name"
        );
        let mut homes = self.shared.homes.write().unwrap_or_else(|e| e.into_inner());
        assert!(homes.contains_key(slug), "system {slug} has a home already");
        homes.insert(slug.to_string(), region.to_string());
    }

    /// Region mode: the home region of system `slug` as this node knows it.
    pub fn home_of(&self, slug: &str) -> Option<String> {
        self.shared.home_of(slug)
    }

    /// The subject of the jumps from unit `from` to unit `to`.
    pub fn subject(&self, from: SystemId, to: SystemId) -> String {
        self.shared.subject(Pair { from, to })
    }

    /// Every message of the pair subject from `from` to `to`, in order, with its writer's
    /// headers, as `mltrader export` reads a log's. Blocks; for checks and tests.
    pub fn messages_of(
        &self,
        from: SystemId,
        to: SystemId,
    ) -> Result<Vec<StoredMessage>, NatsError> {
        let subject = self.subject(from, to);
        let shared = self.shared.clone();
        self.shared.nats.bridge.run(async move {
            let stream = shared.stream_for(&subject).await?;
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message.sequence,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return Ok(Vec::new())
                }
                Err(e) => {
                    return Err(NatsError::jetstream(
                        format!("last message of {subject}"),
                        e,
                    ))
                }
            };
            let mut out = Vec::new();
            visit_messages(&stream, &subject, 1, last, |stream_seq, message| {
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                out.push(StoredMessage {
                    stream_seq,
                    node: header(NODE_HEADER),
                    epoch: header(EPOCH_HEADER),
                    payload: message.payload.to_vec(),
                });
                Next::More
            })
            .await?;
            Ok(out)
        })?
    }

    /// Checks the pair subject from `from` to `to` against fencing's promise, with the check
    /// `mltrader export` makes of a log ([`EpochCheck`]): the writers' epochs never decrease,
    /// and every message after a fence mark of epoch E carries E (until the next mark). A
    /// message without an epoch header is a breach. The first breach, named; blocks.
    pub fn check_fencing(&self, from: SystemId, to: SystemId) -> Result<(), String> {
        let subject = self.subject(from, to);
        let messages = self.messages_of(from, to).map_err(|e| e.to_string())?;
        let mut check = EpochCheck::default();
        for m in &messages {
            check.message(&subject, m);
        }
        if let Some(problem) = check.problems.first() {
            return Err(problem.clone());
        }
        if check.no_epoch_header > 0 {
            return Err(format!(
                "{subject}: {} messages without an epoch header",
                check.no_epoch_header
            ));
        }
        Ok(())
    }

    /// A jump's message body: its record line (`seq` 0), exactly what a reader decodes.
    pub fn jump_line(galaxy: &Galaxy, jump: &Jump) -> Vec<u8> {
        let mut buf = String::with_capacity(256);
        let mut line = Line::new(&mut buf, 0, JUMP_KIND);
        encode_jump(&mut line, galaxy, jump);
        line.finish();
        buf.into_bytes()
    }

    /// A fence mark's message body: a `lease` record line (`seq` 0).
    pub fn lease_line(record: &LeaseRecord) -> Vec<u8> {
        let mut buf = String::with_capacity(64);
        let mut line = Line::new(&mut buf, 0, LEASE_KIND);
        record.encode(&mut line);
        line.finish();
        buf.into_bytes()
    }
}

impl Shared {
    fn subject(&self, pair: Pair) -> String {
        let (from, to) = (self.galaxy.slug(pair.from), self.galaxy.slug(pair.to));
        let prefix = region::jump_prefix(self.home_of(to).as_deref());
        subject::of_pair_with(&prefix, from, to)
    }

    /// The home region of system `slug`: None without regions.
    fn home_of(&self, slug: &str) -> Option<String> {
        self.nats.region()?;
        let homes = self.homes.read().unwrap_or_else(|e| e.into_inner());
        let home = homes.get(slug).unwrap_or_else(|| {
            panic!("system {slug} has no home region: NatsLinks::set_homes before any jump")
        });
        Some(home.clone())
    }

    /// The region whose stream holds pair subject `subject` (`mlt.<region>.jump.…`), if it
    /// is another region than this node's.
    fn other_region_of(&self, subject: &str) -> Option<String> {
        let own = self.nats.region()?;
        let region = subject.strip_prefix("mlt.")?.split('.').next()?;
        (region != own && region != "jump").then(|| region.to_string())
    }

    /// The stream that holds `subject`: this region's, or another region's jumps' stream
    /// (through the leafnode link), looked up once.
    async fn stream_for(&self, subject: &str) -> Result<Stream, NatsError> {
        let Some(region) = self.other_region_of(subject) else {
            return Ok(self.stream.clone());
        };
        if let Some(stream) = self
            .remote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&region)
        {
            return Ok(stream.clone());
        }
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(crate::limits::ACK_TIMEOUT_MS))
            .api_prefix(region::api_prefix(&region))
            .build(self.nats.client.clone());
        let stream = js.get_stream(JUMPS_STREAM).await.map_err(|e| {
            NatsError::jetstream(
                format!("cannot reach stream {JUMPS_STREAM} of region {region} (the link to it?)"),
                e,
            )
        })?;
        self.remote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region, stream.clone());
        Ok(stream)
    }

    /// The writer state of `pair`, made on first use.
    fn writer(&self, pair: Pair) -> Arc<tokio::sync::Mutex<PairWriter>> {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.entry(pair).or_default().clone()
    }

    /// Publishes one message once and says what the stream answered.
    async fn send(
        &self,
        subject: &str,
        id: &str,
        expected_last: Option<PairSeq>,
        epoch: u64,
        body: &[u8],
    ) -> Result<Answer, Refused> {
        let mut publish = PublishMessage::build()
            .payload(body.to_vec().into())
            .message_id(id)
            .header(NODE_HEADER, self.node.as_str())
            .header(EPOCH_HEADER, epoch.to_string().as_str());
        if let Some(expected) = expected_last {
            publish = publish.expected_last_subject_sequence(expected.0);
        }
        let outcome = match self
            .nats
            .jetstream
            .send_publish(subject.to_string(), publish)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) if self.faults.take_lost_ack() => {
                Err(Refused::Retry("ack lost (simulated)".into()))
            }
            Ok(ack) => {
                assert_eq!(
                    ack.stream, JUMPS_STREAM,
                    "{subject} is stored by stream {}, not {JUMPS_STREAM}",
                    ack.stream
                );
                if let Some(own) = self.nats.region() {
                    let home = self.other_region_of(subject);
                    let want = home.as_deref().unwrap_or(own);
                    assert_eq!(
                        ack.domain.as_str(),
                        want,
                        "{subject} is stored in the domain of its destination's home"
                    );
                }
                let at = PairSeq(ack.sequence);
                Ok(if ack.duplicate {
                    Answer::Duplicate(at)
                } else {
                    Answer::Stored(at)
                })
            }
            Err(e) if is_wrong_last_sequence(&e) => Err(Refused::WrongLast(e.to_string())),
            Err(e) if is_in_process(&e) => {
                bump(&self.stats.in_process);
                Err(Refused::Retry(e.to_string()))
            }
            Err(e) => Err(Refused::Retry(e.to_string())),
        }
    }

    /// The subject's last message, read at the stream leader.
    async fn last_message(&self, subject: &str) -> Result<LastMessage, NatsError> {
        let stream = self.stream_for(subject).await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let header = |key: &str| message.headers.get(key).map(|v| v.as_str().to_string());
                Ok(LastMessage {
                    seq: PairSeq(message.sequence),
                    epoch: header(EPOCH_HEADER)
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(0),
                    node: header(NODE_HEADER).unwrap_or_default(),
                })
            }
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                Ok(LastMessage {
                    seq: PairSeq(0),
                    epoch: 0,
                    node: String::new(),
                })
            }
            Err(e) => Err(NatsError::jetstream(
                format!("last message of {subject}"),
                e,
            )),
        }
    }

    /// [`Shared::last_message`], tried again until `deadline` (an election fails reads for
    /// seconds), then `Unavailable`.
    async fn last_until(&self, subject: &str, deadline: Instant) -> Result<LastMessage, LinkError> {
        loop {
            match self.last_message(subject).await {
                Ok(last) => return Ok(last),
                Err(e) if Instant::now() >= deadline => {
                    bump(&self.stats.unavailable);
                    return Err(LinkError::Unavailable(format!(
                        "{e}; tried for {PAIR_PUBLISH_RETRY_FOR_MS} ms"
                    )));
                }
                Err(e) => {
                    tracing::debug!("{subject}: {e}; reading again");
                    bump(&self.stats.retries);
                    tokio::time::sleep(Duration::from_millis(PAIR_RETRY_PAUSE_MS)).await;
                }
            }
        }
    }

    /// Refuses (Fenced) a writer of epoch `epoch` when the subject's last message is of a
    /// newer epoch: another node owns the origin now.
    fn judge(&self, subject: &str, epoch: u64, last: &LastMessage) -> Result<(), LinkError> {
        if last.epoch <= epoch {
            return Ok(());
        }
        bump(&self.stats.fenced);
        Err(LinkError::Fenced(format!(
            "{subject}: its last message ({}) was written by node {} under epoch {}, newer than this writer's {epoch} (node {}): another node owns the origin now",
            last.seq, last.node, last.epoch, self.node
        )))
    }

    /// Publishes jump `id` (its body `body`) on `pair` under epoch `epoch` until the stream
    /// holds it (stored now or before), fencing refuses it, or [`PAIR_PUBLISH_RETRY_FOR_MS`]
    /// pass. Holds the pair's writer for the whole time.
    async fn publish_jump(
        self: Arc<Self>,
        epoch: u64,
        pair: Pair,
        id: String,
        body: Vec<u8>,
    ) -> Result<PairSeq, LinkError> {
        let subject = self.subject(pair);
        let writer = self.writer(pair);
        let mut writer = writer.lock().await;
        writer.follow(&subject);
        if writer.owed_fence > writer.fenced_at {
            // A fence deferred across the link: stored before this pair's first jump.
            let owed = writer.owed_fence;
            self.fence_locked(pair, owed, &mut writer).await?;
        }
        if epoch < writer.fenced_at.max(writer.owed_fence) {
            bump(&self.stats.fenced);
            return Err(LinkError::Fenced(format!(
                "{subject}: jump {id} under epoch {epoch}, but this node fenced the pair under epoch {}",
                writer.fenced_at
            )));
        }
        let started = Instant::now();
        let deadline = started + Duration::from_millis(PAIR_PUBLISH_RETRY_FOR_MS);
        let mut attempts = 0u32;
        let mut failure = String::new();
        while Instant::now() < deadline {
            let known = match writer.known_last {
                Some(known) => known,
                None => {
                    // A writer that knows nothing of the pair: what is there, and whose.
                    let last = self.last_until(&subject, deadline).await?;
                    self.judge(&subject, epoch, &last)?;
                    writer.known_last = Some(last.seq);
                    last.seq
                }
            };
            attempts += 1;
            match self
                .send(&subject, &id, publish_fence(known), epoch, &body)
                .await
            {
                Ok(Answer::Stored(at)) => {
                    assert!(
                        at > known,
                        "{subject}: jump {id} stored at {at}, not after the expected last {known}"
                    );
                    writer.known_last = Some(at);
                    bump(&self.stats.stored);
                    return Ok(at);
                }
                Ok(Answer::Duplicate(at)) => {
                    // Stored before, maybe by another writer: not this writer's last.
                    bump(&self.stats.duplicates);
                    return Ok(at);
                }
                Err(Refused::WrongLast(detail)) => {
                    let last = self.last_until(&subject, deadline).await?;
                    self.judge(&subject, epoch, &last)?;
                    assert!(
                        last.seq > known,
                        "{subject}: refused for a stale expected last {known} ({detail}), but the last is {}",
                        last.seq
                    );
                    tracing::debug!(
                        "{subject}: jump {id}: expected last {known}, the last is {} (node {}, epoch {}): publishing again",
                        last.seq, last.node, last.epoch
                    );
                    writer.known_last = Some(last.seq);
                    bump(&self.stats.resynced);
                }
                Err(Refused::Retry(reason)) => {
                    tracing::debug!("{subject}: jump {id}: attempt {attempts}: {reason}; again");
                    failure = reason;
                    bump(&self.stats.retries);
                    tokio::time::sleep(Duration::from_millis(PAIR_RETRY_PAUSE_MS)).await;
                }
            }
        }
        bump(&self.stats.unavailable);
        Err(LinkError::Unavailable(format!(
            "{subject}: jump {id}: no answer after {attempts} attempts over {} ms (last: {failure}); whether it is stored is unknown, publishing it again is safe",
            started.elapsed().as_millis()
        )))
    }

    /// Appends a fence mark of epoch `epoch` to `pair`'s subject with the expected last
    /// sequence read just before (again on a race), unless a newer epoch wrote there (Fenced);
    /// the writer then knows the mark's sequence as the last.
    async fn fence_pair(self: Arc<Self>, pair: Pair, epoch: u64) -> Result<(), LinkError> {
        let writer = self.writer(pair);
        let mut writer = writer.lock().await;
        writer.follow(&self.subject(pair));
        self.fence_locked(pair, epoch, &mut writer).await
    }

    /// Region mode: records that `pair`'s fence of `epoch` is owed (its subject lives in
    /// another region): the pair's next publish stores it first ([`Shared::publish_jump`]).
    async fn owe_fence(self: Arc<Self>, pair: Pair, epoch: u64) -> Result<(), LinkError> {
        let writer = self.writer(pair);
        let mut writer = writer.lock().await;
        writer.follow(&self.subject(pair));
        writer.owed_fence = writer.owed_fence.max(epoch);
        Ok(())
    }

    /// [`Shared::fence_pair`] with the pair's writer held.
    async fn fence_locked(
        &self,
        pair: Pair,
        epoch: u64,
        writer: &mut PairWriter,
    ) -> Result<(), LinkError> {
        let subject = self.subject(pair);
        let record = LeaseRecord {
            epoch,
            node: self.node.clone(),
        };
        let body = NatsLinks::lease_line(&record);
        // Unique to this pair, epoch and node, and never a transfer id (a slug has no `/`): a
        // retry of a mark stored but not acknowledged is a duplicate.
        let id = format!(
            "fence/{}/{}/{epoch}/{}",
            self.galaxy.slug(pair.from),
            self.galaxy.slug(pair.to),
            self.node
        );
        let started = Instant::now();
        let deadline = started + Duration::from_millis(PAIR_PUBLISH_RETRY_FOR_MS);
        let mut failure = String::new();
        while Instant::now() < deadline {
            let last = self.last_until(&subject, deadline).await?;
            self.judge(&subject, epoch, &last)?;
            let pause_ms = self.faults.fence_pause_ms.load(Ordering::SeqCst);
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            match self.send(&subject, &id, Some(last.seq), epoch, &body).await {
                Ok(Answer::Stored(at)) => {
                    assert!(
                        at > last.seq,
                        "{subject}: a mark stored at {at} after {}",
                        last.seq
                    );
                    writer.known_last = Some(at);
                    writer.fenced_at = writer.fenced_at.max(epoch);
                    bump(&self.stats.marks);
                    return Ok(());
                }
                Ok(Answer::Duplicate(_)) => {
                    // This mark was stored by an attempt whose answer was lost (or by an
                    // earlier fence of the same epoch): what is last now, and whose?
                    let last = self.last_until(&subject, deadline).await?;
                    self.judge(&subject, epoch, &last)?;
                    writer.known_last = Some(last.seq);
                    writer.fenced_at = writer.fenced_at.max(epoch);
                    bump(&self.stats.duplicates);
                    return Ok(());
                }
                Err(Refused::WrongLast(detail)) => {
                    tracing::debug!("{subject}: fence of epoch {epoch}: {detail}; reading again");
                    bump(&self.stats.resynced);
                }
                Err(Refused::Retry(reason)) => {
                    failure = reason;
                    bump(&self.stats.retries);
                    tokio::time::sleep(Duration::from_millis(PAIR_RETRY_PAUSE_MS)).await;
                }
            }
        }
        bump(&self.stats.unavailable);
        Err(LinkError::Unavailable(format!(
            "{subject}: fence of epoch {epoch} not stored after {} ms (last: {failure})",
            started.elapsed().as_millis()
        )))
    }

    /// Reads `pair`'s subject from after `after` into `sink`, live, until the sink is closed
    /// or a message is malformed (the error sent first). A failing stream is tried again for
    /// as long as the sink is open (a warning every [`PAIR_READ_WARN_EVERY_MS`]).
    async fn read_pair(self: Arc<Self>, pair: Pair, after: PairSeq, sink: ArrivalSink) {
        let subject = self.subject(pair);
        let mut progress = Progress {
            next: after.0 + 1,
            failing_since: None,
        };
        if let Err(error) = self.check_position(&subject, after).await {
            let _ = sink.send(Err(error)).await;
            return;
        }
        let mut pause_ms = PAIR_RETRY_PAUSE_MS;
        let mut warned_at_ms = 0;
        loop {
            if progress.failing_since.is_none() {
                (pause_ms, warned_at_ms) = (PAIR_RETRY_PAUSE_MS, 0);
            }
            let outcome = tokio::select! {
                _ = sink.closed() => return,
                outcome = self.read_with_one_consumer(&subject, pair, &mut progress, &sink) => outcome,
            };
            let reason = match outcome {
                ReadEnd::SinkClosed => return,
                ReadEnd::Malformed(error) => {
                    let _ = sink.send(Err(error)).await;
                    return;
                }
                ReadEnd::Engine(reason) => reason,
            };
            let since = *progress.failing_since.get_or_insert_with(Instant::now);
            let failing_ms = since.elapsed().as_millis() as u64;
            if failing_ms >= warned_at_ms + PAIR_READ_WARN_EVERY_MS {
                warned_at_ms = failing_ms;
                tracing::warn!(
                    "{subject}: no consumer has read it from stream sequence {} for {failing_ms} ms (last: {reason}); trying again",
                    progress.next
                );
            } else {
                tracing::debug!(
                    "{subject}: reading from {}: {reason}; a new consumer",
                    progress.next
                );
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            // Reset at the top of the loop once a consumer delivers again.
            pause_ms = (pause_ms * 2).min(PAIR_READ_MAX_PAUSE_MS);
        }
    }

    /// Refuses a position past the subject's last message: positions are of messages read
    /// from it, and a subject never loses its last message (nothing purges pair subjects),
    /// so the stream was replaced or lost data; reading on would skip every jump stored below
    /// the position, silently. When the stream does not answer for
    /// [`PAIR_PUBLISH_RETRY_FOR_MS`], reading starts unchecked (a warning says so).
    async fn check_position(&self, subject: &str, after: PairSeq) -> Result<(), LinkError> {
        if after == PairSeq(0) {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_millis(PAIR_PUBLISH_RETRY_FOR_MS);
        let last = match self.last_until(subject, deadline).await {
            Ok(last) => last,
            Err(e) => {
                tracing::warn!("{subject}: position {after} not checked: {e}");
                return Ok(());
            }
        };
        if after <= last.seq {
            return Ok(());
        }
        Err(LinkError::Malformed(format!(
            "{subject}: the position to read after, {after}, is past the subject's last message ({}): stream {JUMPS_STREAM} was replaced or lost messages; nothing read, so that no jump is skipped",
            last.seq
        )))
    }

    /// Reads with one ordered consumer from `progress.next` until it fails, a message is
    /// malformed, or the sink is closed.
    async fn read_with_one_consumer(
        &self,
        subject: &str,
        pair: Pair,
        progress: &mut Progress,
        sink: &ArrivalSink,
    ) -> ReadEnd {
        assert!(progress.next >= 1, "stream sequences are from 1");
        assert!(
            self.other_region_of(subject).is_none(),
            "{subject}: a unit reads the pair subjects into it, which live in its own region"
        );
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: progress.next,
                },
                max_expires: Duration::from_millis(PAIR_READ_EXPIRES_MS),
                ..Default::default()
            })
            .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => return ReadEnd::Engine(format!("cannot create a consumer: {e}")),
        };
        bump(&self.stats.consumers);
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => return ReadEnd::Engine(format!("cannot read the consumer: {e}")),
        };
        // The watchdog: a consumer that delivers nothing while the subject holds messages past
        // its position for a whole check period is replaced (async-nats's own re-creation was
        // seen to leave a reader silent for over 30 s after the stream leader was killed).
        let mut check = tokio::time::interval(Duration::from_millis(PAIR_READ_STALL_CHECK_MS));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        let mut read_since_check = false;
        let mut pending_since: Option<(u64, Instant)> = None;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = check.tick() => {
                    if std::mem::take(&mut read_since_check) {
                        pending_since = None;
                        continue;
                    }
                    bump(&self.stats.stall_checks);
                    let Ok(last) = self.last_message(subject).await else {
                        continue; // the stream does not answer: nothing to judge
                    };
                    if last.seq.0 < progress.next {
                        pending_since = None;
                        continue;
                    }
                    match pending_since {
                        Some((next, since)) if next == progress.next => {
                            bump(&self.stats.stalls);
                            return ReadEnd::Engine(format!(
                                "the consumer delivered nothing for {} ms while the subject holds messages up to {} past {}",
                                since.elapsed().as_millis(), last.seq, progress.next - 1
                            ));
                        }
                        _ => pending_since = Some((progress.next, Instant::now())),
                    }
                    continue;
                }
            };
            let Some(message) = message else {
                return ReadEnd::Engine("the consumer's messages ended".into());
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => return ReadEnd::Engine(format!("reading: {e}")),
            };
            let at = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => return ReadEnd::Engine(format!("a message without its sequence: {e}")),
            };
            if at < progress.next {
                // async-nats re-creates an ordered consumer that had delivered nothing yet from
                // the stream's start, whatever its start sequence was (logs::visit_messages
                // says more): what comes before the position again is skipped.
                continue;
            }
            let decoded =
                decode_message(&self.galaxy, subject, pair, PairSeq(at), &message.payload);
            progress.next = at + 1;
            progress.failing_since = None;
            read_since_check = true;
            match decoded {
                Ok(None) => bump(&self.stats.marks_skipped),
                Ok(Some(arrived)) => {
                    if sink.send(Ok(arrived)).await.is_err() {
                        return ReadEnd::SinkClosed;
                    }
                    bump(&self.stats.delivered);
                }
                Err(error) => return ReadEnd::Malformed(error),
            }
        }
    }
}

/// The message at `at` of `pair`'s subject (named `subject`): a jump of that pair (Some), a
/// fence mark (None), or Malformed naming the subject and the sequence. What every reader of
/// a pair subject runs on each message.
pub fn decode_message(
    galaxy: &Galaxy,
    subject: &str,
    pair: Pair,
    at: PairSeq,
    payload: &[u8],
) -> Result<Option<Arrived>, LinkError> {
    let malformed = |why: String| {
        LinkError::Malformed(format!(
            "{subject}, stream {JUMPS_STREAM} sequence {at}: {why}"
        ))
    };
    let Some(line) = payload.strip_suffix(b"\n") else {
        return Err(malformed("not a record line (no line end)".into()));
    };
    if line.contains(&b'\n') {
        return Err(malformed(
            "more than one line: a message is one record".into(),
        ));
    }
    let record = parse_line(payload).map_err(|e| malformed(format!("not a record: {e}")))?;
    if record.seq != 0 {
        return Err(malformed(format!(
            "record number {} where a pair subject's records have 0",
            record.seq
        )));
    }
    if LeaseRecord::is_lease(&record) {
        LeaseRecord::decode(&record).map_err(|e| malformed(format!("a bad lease record: {e}")))?;
        return Ok(None);
    }
    if record.kind != JUMP_KIND {
        return Err(malformed(format!(
            "a record of kind {:?}: a pair subject holds jumps and lease records only",
            record.kind
        )));
    }
    let jump = decode_jump(galaxy, &record).map_err(|e| malformed(format!("a bad jump: {e}")))?;
    if Pair::of(&jump) != Some(pair) {
        return Err(malformed(format!(
            "jump {} goes from {} to {}, not along this pair",
            msg_id(galaxy, &jump),
            jump.from.slug(galaxy),
            jump.to.slug(galaxy)
        )));
    }
    Ok(Some(Arrived { at, jump }))
}

/// Where a reader of one pair stands.
struct Progress {
    /// The stream sequence to read from (one past the last delivered or skipped).
    next: u64,
    /// Since when consumers fail with nothing read (None: the last one read).
    failing_since: Option<Instant>,
}

/// Why one consumer stopped reading.
enum ReadEnd {
    SinkClosed,
    Malformed(LinkError),
    /// The stream or the consumer failed: read again with a new one.
    Engine(String),
}

/// The error a task of the bridge that did not finish is reported as.
fn runtime_stopped(e: tokio::task::JoinError) -> LinkError {
    LinkError::Unavailable(format!("the NATS runtime stopped the task: {e}"))
}

/// The units a jump from `from` may go to, so its pair subjects: its lanes, and the home
/// system (a ship destroyed anywhere respawns at home: `Event::Destroyed`'s jump home, which
/// needs no lane).
pub fn pair_ends_from(galaxy: &Galaxy, from: SystemId) -> Vec<SystemId> {
    let mut ends = galaxy.neighbours(from).to_vec();
    let home = galaxy.home();
    if from != home && !ends.contains(&home) {
        ends.push(home);
    }
    ends
}

/// The units a jump towards `to` may come from: its lanes, and every system for the home one.
pub fn pair_ends_towards(galaxy: &Galaxy, to: SystemId) -> Vec<SystemId> {
    if to == galaxy.home() {
        return galaxy.ids().filter(|&s| s != to).collect();
    }
    galaxy.neighbours(to).to_vec()
}

/// Whether jumps may travel on the pair subject `pair` ([`pair_ends_from`]).
pub fn is_pair(galaxy: &Galaxy, pair: Pair) -> bool {
    pair.from != pair.to && (galaxy.has_lane(pair.from, pair.to) || pair.to == galaxy.home())
}

impl Links for NatsLinks {
    fn fence_outgoing(&self, from: SystemId, epoch: u64) -> LinkFuture<'_, Result<(), LinkError>> {
        assert!(epoch > 0, "a lease's epoch is from 1");
        let shared = self.shared.clone();
        let lanes: Vec<SystemId> = pair_ends_from(&shared.galaxy, from);
        Box::pin(async move {
            // Every lane at once: a takeover waits for the slowest, not for their sum.
            let tasks: Vec<_> = lanes
                .into_iter()
                .map(|to| {
                    let pair = Pair { from, to };
                    if shared.other_region_of(&shared.subject(pair)).is_some() {
                        // Its subject lives in another region: fenced before its first
                        // publish, so that a cut link never holds a takeover up.
                        shared
                            .nats
                            .bridge
                            .spawn(shared.clone().owe_fence(pair, epoch))
                    } else {
                        shared
                            .nats
                            .bridge
                            .spawn(shared.clone().fence_pair(pair, epoch))
                    }
                })
                .collect();
            let mut outcome = Ok(());
            for task in tasks {
                let result = task.await.unwrap_or_else(|e| Err(runtime_stopped(e)));
                outcome = match (outcome, result) {
                    (Ok(()), result) => result,
                    // Fencing says more than an engine that did not answer.
                    (Err(LinkError::Unavailable(_)), Err(fenced @ LinkError::Fenced(_))) => {
                        Err(fenced)
                    }
                    (first, _) => first,
                };
            }
            outcome
        })
    }

    fn publish(&self, epoch: u64, jump: Jump) -> LinkFuture<'_, Result<PairSeq, LinkError>> {
        let galaxy = &self.shared.galaxy;
        let pair = Pair::of(&jump).unwrap_or_else(|| {
            panic!(
                "BUG: an instance move ({}) published on a pair subject",
                msg_id(galaxy, &jump)
            )
        });
        assert!(
            is_pair(galaxy, pair),
            "BUG: jump {} between {} and {}, which have no lane (so no fenced pair subject)",
            msg_id(galaxy, &jump),
            galaxy.slug(pair.from),
            galaxy.slug(pair.to)
        );
        let id = msg_id(galaxy, &jump);
        let body = NatsLinks::jump_line(galaxy, &jump);
        let shared = self.shared.clone();
        Box::pin(async move {
            let publish = shared.clone().publish_jump(epoch, pair, id, body);
            shared
                .nats
                .bridge
                .spawn(publish)
                .await
                .unwrap_or_else(|e| Err(runtime_stopped(e)))
        })
    }

    fn read_towards(
        &self,
        to: SystemId,
        after: BTreeMap<SystemId, PairSeq>,
        sink: ArrivalSink,
    ) -> Result<(), LinkError> {
        let galaxy = &self.shared.galaxy;
        let lanes = pair_ends_towards(galaxy, to);
        // Positions come from a snapshot: one of a pair that is no lane is refused, not
        // panicked on.
        if let Some(from) = after.keys().find(|from| !lanes.contains(from)) {
            return Err(LinkError::Malformed(format!(
                "a position on the pair from {} to {}, which have no lane: not a position of this galaxy",
                galaxy.slug(*from),
                galaxy.slug(to)
            )));
        }
        for from in lanes {
            let start = after.get(&from).copied().unwrap_or_default();
            let reader = self
                .shared
                .clone()
                .read_pair(Pair { from, to }, start, sink.clone());
            drop(self.shared.nats.bridge.spawn(reader));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::ids::{Tick, Xfer};
    use sim::instance::InstanceId;
    use sim::player::Player;
    use sim::rules::Rules;
    use store::seq::Seq;

    fn setup() -> (Galaxy, Pair, Jump) {
        let g = Galaxy::default_galaxy();
        let from = g.home();
        let to = g.neighbours(from)[0];
        let jump = Jump {
            from: InstanceId::new(from, 2),
            xfer: Xfer(7),
            to: InstanceId::primary(to),
            t: Tick(40),
            travel_ticks: 5,
            player: Player::starter("Barnard's Kid", &Rules::default()),
            tseq: Seq(0),
        };
        (g, Pair { from, to }, jump)
    }

    fn malformed(outcome: Result<Option<Arrived>, LinkError>) -> String {
        match outcome {
            Err(LinkError::Malformed(why)) => why,
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[test]
    fn a_jump_line_reads_back_and_a_lease_mark_is_skipped() {
        let (g, pair, jump) = setup();
        let line = NatsLinks::jump_line(&g, &jump);
        assert!(line.starts_with(b"0 jump xfer=sol.2:7 from=sol.2 to="));
        let read = decode_message(&g, "s", pair, PairSeq(9), &line).unwrap();
        let arrived = read.expect("a jump");
        assert_eq!((arrived.at, arrived.jump), (PairSeq(9), jump));
        let mark = NatsLinks::lease_line(&LeaseRecord {
            epoch: 3,
            node: "b".into(),
        });
        assert!(mark.starts_with(b"0 lease epoch=3 node=b ~"));
        assert!(decode_message(&g, "s", pair, PairSeq(10), &mark)
            .unwrap()
            .is_none());
    }

    #[test]
    fn anything_else_on_a_pair_subject_is_malformed_naming_subject_and_sequence() {
        let (g, pair, jump) = setup();
        let line = NatsLinks::jump_line(&g, &jump);
        let subject = "mlt.jump.sol.x";
        let at = PairSeq(12);
        let why = malformed(decode_message(
            &g,
            subject,
            pair,
            at,
            &line[..line.len() - 1],
        ));
        assert!(
            why.starts_with("mlt.jump.sol.x, stream MLT_JUMPS sequence 12: "),
            "{why}"
        );
        let two = [line.clone(), line.clone()].concat();
        assert!(malformed(decode_message(&g, subject, pair, at, &two)).contains("more than one"));
        let mut torn = line.clone();
        torn[5] ^= 1;
        assert!(malformed(decode_message(&g, subject, pair, at, &torn)).contains("checksum"));
        let mut numbered = store::record::LineBuilder::new(4, "lease");
        numbered.field_num("epoch", 1).field("node", "a");
        let numbered = numbered.finish();
        assert!(
            malformed(decode_message(&g, subject, pair, at, numbered.as_bytes()))
                .contains("record number 4")
        );
        let mut other = store::record::LineBuilder::new(0, "join");
        other.field("player", "x");
        let why = malformed(decode_message(
            &g,
            subject,
            pair,
            at,
            other.finish().as_bytes(),
        ));
        assert!(why.contains("kind \"join\""), "{why}");
        let reverse = Pair {
            from: pair.to,
            to: pair.from,
        };
        assert!(malformed(decode_message(&g, subject, reverse, at, &line))
            .contains("not along this pair"));
        let mut bad_lease = store::record::LineBuilder::new(0, "lease");
        bad_lease.field("node", "a");
        let bad_lease = bad_lease.finish();
        assert!(
            malformed(decode_message(&g, subject, pair, at, bad_lease.as_bytes()))
                .contains("a bad lease record")
        );
    }
}
