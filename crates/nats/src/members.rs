//! The nodes of a galaxy announcing themselves in the KV bucket [`NODES_BUCKET`] (issue 19,
//! decision 4): [`Members::announce`] writes this node's key (its name) with the value
//! `url=<api url> started=<unix ms>` and an [`Announcement`] renews it every quarter of a
//! period, compare-and-set at the revision it last wrote; [`Announcement::leave`] deletes it
//! (a clean leave: observers see the member gone at once). [`Members::poll`] reads every key's
//! last write at the bucket's stream leader.
//!
//! Who is live is not decided here: an observer gives each poll's outcome (answered, with the
//! keys and revisions found, or not answered) to `mesh::protocol::members::Roster`, which
//! counts a member's silence only over answered polls (decision 2), so that an election, which
//! stalls every KV read and write for seconds, never looks like every node dying. The bucket
//! has no `max_age` of a period for the same reason: the server's clock never removes a key
//! while the store is electing; it only forgets a key silent for [`FORGET_AFTER_S`].
//!
//! This module never writes a renewal without the revision it expects, never deletes another
//! node's key, and never judges a member live or gone.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use futures_util::StreamExt;

use crate::error::is_wrong_last_sequence;
use crate::{Nats, NatsError};

/// The bucket where nodes announce themselves.
pub const NODES_BUCKET: &str = "mlt_nodes";

/// How many renewals fit in a period: a member renews every period / this.
pub const RENEWALS_PER_PERIOD: u32 = 4;

/// The shortest period accepted: a renewal every quarter of it must fit a KV round trip.
pub const MIN_PERIOD_MS: u64 = 1_000;

/// The bucket forgets a key not written for this long (a node that died and never came back),
/// by the server's clock: far longer than any election, so that an observer has judged the
/// member gone by silence long before.
pub const FORGET_AFTER_S: u64 = 24 * 3_600;

/// How long one poll of the bucket may take before it counts as unanswered.
pub const POLL_TIMEOUT_MS: u64 = 3_000;

/// The most keys a poll reads (a galaxy's nodes): a bucket holding more is refused.
pub const MAX_MEMBERS: usize = 1_024;

/// How long a clean leave tries to delete its key (an election stalls KV writes for 4-9 s);
/// after that the key stays and observers judge the member gone by its silence.
pub const LEAVE_RETRY_FOR_MS: u64 = 15_000;

/// The pause between two attempts of a leave's delete.
pub const LEAVE_RETRY_PAUSE_MS: u64 = 200;

const _: () = assert!(RENEWALS_PER_PERIOD >= 3);
const _: () = assert!(POLL_TIMEOUT_MS < FORGET_AFTER_S * 1_000);
const _: () = assert!(LEAVE_RETRY_PAUSE_MS < LEAVE_RETRY_FOR_MS);

/// A node as its key announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's name (the key).
    pub node: String,
    /// Its API's URL.
    pub url: String,
    /// When it started, in unix milliseconds (its own clock).
    pub started_ms: u64,
    /// The revision of the key's last write (its announcement or its last renewal).
    pub revision: u64,
}

/// A key whose value is not an announcement (written by something else than this module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub key: String,
    pub revision: u64,
    pub value: String,
    pub reason: String,
}

/// What one answered poll found: the keys present (deleted ones left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The members announced, by name.
    pub members: BTreeMap<String, Member>,
    /// Keys present whose value cannot be read: never counted as members.
    pub malformed: Vec<Malformed>,
}

/// The value of a node's key.
fn announcement(url: &str, started_ms: u64) -> String {
    format!("url={url} started={started_ms}")
}

/// Reads a key's value (`url=<api url> started=<unix ms>`).
fn parse_announcement(key: &str, revision: u64, value: &str) -> Result<Member, Malformed> {
    let malformed = |reason: &str| Malformed {
        key: key.to_string(),
        revision,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let field = |name: &str| {
        value
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let url = field("url").ok_or_else(|| malformed("no url=<api url>"))?;
    let started_ms = field("started")
        .ok_or_else(|| malformed("no started=<unix ms>"))?
        .parse()
        .map_err(|_| malformed("started= is not a number of milliseconds"))?;
    Ok(Member {
        node: key.to_string(),
        url: url.to_string(),
        started_ms,
        revision,
    })
}

/// Whether `node` can be a key of the bucket (NATS KV keys: letters, digits, `-_=/.`, not
/// starting or ending with a dot).
fn valid_key(node: &str) -> bool {
    !node.is_empty()
        && !node.starts_with('.')
        && !node.ends_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=/.".contains(&b))
}

/// The bucket of members, for this node's connection.
pub struct Members {
    nats: Nats,
    kv: kv::Store,
    period: Duration,
}

impl Members {
    /// Opens the bucket `bucket` (creating it: `replicas` copies, file storage, one revision a
    /// key). `period`: a member silent that long is gone; every node must use the same.
    pub fn open(
        nats: &Nats,
        bucket: &str,
        period: Duration,
        replicas: usize,
    ) -> Result<Members, NatsError> {
        assert!(
            period >= Duration::from_millis(MIN_PERIOD_MS),
            "a period of at least MIN_PERIOD_MS ({MIN_PERIOD_MS} ms)"
        );
        let config = kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            max_age: Duration::from_secs(FORGET_AFTER_S),
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = nats.open_bucket(config)?;
        Ok(Members {
            nats: nats.clone(),
            kv,
            period,
        })
    }

    /// A member silent this long is gone.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Announces this node (its connection's name) with its API's `url`, started at
    /// `started_ms` (unix ms), and renews the key every quarter period until the announcement
    /// is left or dropped. The write is unconditional: a node restarted under the same name
    /// takes its key over (the earlier process's next renewal is then refused).
    pub fn announce(&self, url: &str, started_ms: u64) -> Result<Announcement, NatsError> {
        let node = self.nats.node.clone();
        if !valid_key(&node) {
            return Err(NatsError::Member {
                node,
                reason: "a node's name is a KV key: letters, digits and -_=/. only, not starting or ending with a dot".into(),
            });
        }
        if url.is_empty() || url.contains(char::is_whitespace) {
            return Err(NatsError::Member {
                node,
                reason: format!("its API URL {url:?} is empty or holds a space"),
            });
        }
        let value = announcement(url, started_ms);
        let kv = self.kv.clone();
        let (key, put_value) = (node.clone(), value.clone());
        let what = format!("{node}: cannot announce it in bucket {}", self.kv.name);
        let revision = self.nats.bridge.run(async move {
            kv.put(key, put_value.into_bytes().into())
                .await
                .map_err(|e| NatsError::jetstream(what, e))
        })??;
        assert!(revision > 0, "a KV revision counts from 1");
        Ok(Announcement::start(
            self.nats.clone(),
            self.kv.clone(),
            node,
            value,
            revision,
            self.period / RENEWALS_PER_PERIOD,
        ))
    }

    /// Every key's last write, read at the bucket's stream leader: the members announced and
    /// the keys that are not announcements. An error (a timeout: the store is electing a
    /// leader, or cut off) is an unanswered poll.
    pub fn poll(&self) -> Result<Listing, NatsError> {
        let kv = self.kv.clone();
        let inbox = self.nats.client.new_inbox();
        let what = format!("cannot poll bucket {}", self.kv.name);
        let read = self.nats.bridge.run(async move {
            tokio::time::timeout(
                Duration::from_millis(POLL_TIMEOUT_MS),
                last_writes(kv, inbox),
            )
            .await
        })?;
        let writes = match read {
            Ok(Ok(writes)) => writes,
            Ok(Err(e)) => return Err(NatsError::jetstream(what, e)),
            Err(_) => {
                return Err(NatsError::jetstream(
                    what,
                    format!("no answer within {POLL_TIMEOUT_MS} ms"),
                ))
            }
        };
        let mut listing = Listing::default();
        for (key, write) in writes {
            let Write::Put { revision, value } = write else {
                continue;
            };
            match parse_announcement(&key, revision, &value) {
                Ok(member) => {
                    listing.members.insert(key, member);
                }
                Err(malformed) => listing.malformed.push(malformed),
            }
        }
        Ok(listing)
    }
}

/// A key's last write.
enum Write {
    Put { revision: u64, value: String },
    Deleted,
}

/// Every key's last write: an ordered consumer from the last message of each subject of the
/// bucket, created at the stream's leader, read until nothing is pending, then deleted (the
/// server would keep it 30 s after its reader is gone, async-nats's fixed inactivity
/// threshold for ordered consumers: about 24 consumers per node at the bucket's leader with a
/// 5 s period). A poll given up keeps its consumer those 30 s.
async fn last_writes(
    kv: kv::Store,
    inbox: String,
) -> Result<BTreeMap<String, Write>, async_nats::Error> {
    let consumer = kv
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: inbox,
            description: Some("mltrader members poll".to_string()),
            filter_subject: format!("{}>", kv.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await?;
    let name = consumer.cached_info().name.clone();
    let read = read_last_writes(&kv, consumer).await;
    if let Err(e) = kv.stream.delete_consumer(&name).await {
        tracing::debug!(
            "members poll: consumer {name} not deleted ({e}): the server drops it in 30 s"
        );
    }
    read
}

/// Reads a poll's consumer until nothing is pending.
async fn read_last_writes(
    kv: &kv::Store,
    consumer: async_nats::jetstream::consumer::Consumer<push::OrderedConfig>,
) -> Result<BTreeMap<String, Write>, async_nats::Error> {
    let mut writes = BTreeMap::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(writes);
    }
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let info = message.info()?;
        let (revision, pending) = (info.stream_sequence, info.pending);
        let Some(key) = message.subject.strip_prefix(kv.prefix.as_str()) else {
            return Err(format!("{} is not a key of the bucket", message.subject).into());
        };
        let operation = message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .map(|v| v.as_str().to_string());
        let write = match operation.as_deref() {
            Some("DEL" | "PURGE") => Write::Deleted,
            _ => Write::Put {
                revision,
                value: String::from_utf8_lossy(&message.payload).into_owned(),
            },
        };
        // A later write of a key read in the same poll replaces the earlier one.
        writes.insert(key.to_string(), write);
        if writes.len() > MAX_MEMBERS {
            return Err(format!("more than MAX_MEMBERS ({MAX_MEMBERS}) keys").into());
        }
        if pending == 0 {
            break;
        }
    }
    Ok(writes)
}

/// Where this node's announcement stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Its last renewal (or the announcement) was stored at this revision.
    Renewed { revision: u64 },
    /// Another write of the key came first (the same name announced again, by a restarted
    /// process or a second one): this announcement renews no more.
    Replaced { revision: u64 },
}

/// What the renewal thread and its owner share. A std mutex: held only to read or write it,
/// never across a request.
struct Shared {
    standing: Standing,
    /// The renewals that got no answer since the last one stored (an election, a cut).
    failed_renewals: u64,
    /// Why the last renewal that failed did.
    last_failure: Option<String>,
}

/// This node's key, renewed every quarter period by a thread of its own until
/// [`Announcement::leave`] (which deletes the key) or a drop (which only stops renewing: to
/// observers, as if the node died).
pub struct Announcement {
    nats: Nats,
    kv: kv::Store,
    node: String,
    /// The key's value as this process writes it (its start time makes it this process's).
    value: String,
    shared: Arc<Mutex<Shared>>,
    stop: Option<mpsc::Sender<()>>,
    renewals: Option<JoinHandle<()>>,
}

impl Announcement {
    fn start(
        nats: Nats,
        kv: kv::Store,
        node: String,
        value: String,
        revision: u64,
        every: Duration,
    ) -> Announcement {
        let shared = Arc::new(Mutex::new(Shared {
            standing: Standing::Renewed { revision },
            failed_renewals: 0,
            last_failure: None,
        }));
        let (stop, stopped) = mpsc::channel();
        let renewals = {
            let (nats, kv, node, shared) = (nats.clone(), kv.clone(), node.clone(), shared.clone());
            let value = value.clone();
            std::thread::Builder::new()
                .name(format!("announce {node}"))
                .spawn(move || renew_until_stopped(nats, kv, node, value, shared, stopped, every))
                .expect("a thread for the renewals")
        };
        Announcement {
            nats,
            kv,
            node,
            value,
            shared,
            stop: Some(stop),
            renewals: Some(renewals),
        }
    }

    /// Where the announcement stands.
    pub fn standing(&self) -> Standing {
        lock(&self.shared).standing.clone()
    }

    /// The renewals that got no answer since the last one stored.
    pub fn failed_renewals(&self) -> u64 {
        lock(&self.shared).failed_renewals
    }

    /// Why the last renewal that failed did (None: none failed).
    pub fn last_failure(&self) -> Option<String> {
        lock(&self.shared).last_failure.clone()
    }

    /// Stops renewing (the thread ends within one request).
    fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.renewals.take() {
            let _ = thread.join();
        }
    }

    /// Leaves cleanly: stops renewing and deletes the key at the revision last written, tried
    /// for up to [`LEAVE_RETRY_FOR_MS`]. An error says the key stays (observers then judge the
    /// member gone after a period of silence), or that another write replaced it.
    pub fn leave(mut self) -> Result<(), NatsError> {
        self.stop_renewing();
        let revision = match self.standing() {
            Standing::Renewed { revision } => revision,
            Standing::Replaced { revision } => {
                return Err(NatsError::Member {
                    node: self.node.clone(),
                    reason: format!(
                        "its key was written by another (revision {revision}): not deleted"
                    ),
                })
            }
        };
        let started = std::time::Instant::now();
        let mut revision = revision;
        loop {
            let (kv, key, value) = (self.kv.clone(), self.node.clone(), self.value.clone());
            let deleted = self.nats.bridge.run(async move {
                match kv.delete_expect_revision(&key, Some(revision)).await {
                    Ok(()) => Ok(Deleted::Done),
                    Err(e)
                        if e.kind() == UpdateErrorKind::WrongLastRevision
                            || is_wrong_last_sequence(&e) =>
                    {
                        // A renewal stored although its answer was lost: delete at it.
                        Ok(match own_later_write(&kv, &key, &value, revision).await? {
                            Some(own) => Deleted::Retry(own),
                            None => Deleted::Replaced,
                        })
                    }
                    Err(e) => Err(async_nats::Error::from(e)),
                }
            })?;
            let reason = match deleted {
                Ok(Deleted::Done) => return Ok(()),
                Ok(Deleted::Retry(own)) => {
                    assert!(own > revision, "a KV revision only grows");
                    revision = own;
                    continue;
                }
                Ok(Deleted::Replaced) => {
                    return Err(NatsError::Member {
                        node: self.node.clone(),
                        reason: format!(
                            "its key was written by another since revision {revision}: not deleted"
                        ),
                    })
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= Duration::from_millis(LEAVE_RETRY_FOR_MS) {
                return Err(NatsError::Member {
                    node: self.node.clone(),
                    reason: format!(
                        "cannot delete its key within {LEAVE_RETRY_FOR_MS} ms ({reason}); observers will judge it gone after a period of silence"
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(LEAVE_RETRY_PAUSE_MS));
        }
    }
}

/// What one delete of a leave met.
enum Deleted {
    Done,
    /// The key holds this announcement's own later write (a renewal whose answer was lost):
    /// delete at that revision.
    Retry(u64),
    /// Someone else wrote the key.
    Replaced,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one renewal met.
enum Renewal {
    /// The key now has this revision, written by this announcement.
    Stored(u64),
    /// Another write of the key came first.
    Replaced,
}

/// One renewal: an update of `key` at `revision`, given up after `timeout` (a quarter period,
/// so that once the store answers again after an election the next renewal is at most half a
/// period away). An update refused for its revision may be this node's own earlier renewal,
/// stored although its answer was lost (given up): the key's last write, read at the stream's
/// leader, is then this announcement's own value (its start time makes it this process's),
/// and its revision is adopted.
async fn renew(
    kv: kv::Store,
    key: String,
    value: String,
    revision: u64,
    timeout: Duration,
) -> Result<Renewal, async_nats::Error> {
    let update = kv.update(&key, value.clone().into_bytes().into(), revision);
    match tokio::time::timeout(timeout, update).await {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis()).into()),
        Ok(Ok(new_revision)) => Ok(Renewal::Stored(new_revision)),
        Ok(Err(e))
            if e.kind() == UpdateErrorKind::WrongLastRevision || is_wrong_last_sequence(&e) =>
        {
            let own = tokio::time::timeout(timeout, own_later_write(&kv, &key, &value, revision))
                .await
                .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))??;
            Ok(own.map_or(Renewal::Replaced, Renewal::Stored))
        }
        Ok(Err(e)) => Err(e.into()),
    }
}

/// The revision of `key`'s last write, read at the stream's leader, if it is later than
/// `revision` and holds this announcement's own `value` (its start time makes it this
/// process's): a renewal stored although its answer was lost. None: someone else wrote it, or
/// deleted it.
async fn own_later_write(
    kv: &kv::Store,
    key: &str,
    value: &str,
    revision: u64,
) -> Result<Option<u64>, async_nats::Error> {
    let subject = format!("{}{key}", kv.prefix);
    let last = kv.stream.get_last_raw_message_by_subject(&subject).await?;
    let deleted = matches!(
        last.headers.get("KV-Operation").map(|v| v.as_str()),
        Some("DEL" | "PURGE")
    );
    let own = !deleted && last.payload.as_ref() == value.as_bytes() && last.sequence > revision;
    Ok(own.then_some(last.sequence))
}

/// The renewal loop: every `every`, an update of the key at the revision last written, until
/// told to stop (or the sender dropped) or the key is found written by another.
fn renew_until_stopped(
    nats: Nats,
    kv: kv::Store,
    node: String,
    value: String,
    shared: Arc<Mutex<Shared>>,
    stopped: mpsc::Receiver<()>,
    every: Duration,
) {
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let revision = match lock(&shared).standing {
            Standing::Renewed { revision } => revision,
            Standing::Replaced { .. } => return,
        };
        let renewal = renew(kv.clone(), node.clone(), value.clone(), revision, every);
        let updated = nats.bridge.run(renewal);
        let mut state = lock(&shared);
        match updated {
            Ok(Ok(Renewal::Stored(new_revision))) => {
                assert!(new_revision > revision, "a KV revision only grows");
                state.standing = Standing::Renewed {
                    revision: new_revision,
                };
                state.failed_renewals = 0;
            }
            Ok(Ok(Renewal::Replaced)) => {
                tracing::warn!(
                    "{node}: its announcement was written by another since revision {revision}: renewing no more"
                );
                state.standing = Standing::Replaced { revision };
                return;
            }
            // Unanswered, or 10164/10158 (an earlier renewal of this node still in process,
            // `is_in_process`): tried again at the same revision; if that earlier one was
            // stored, the next try is refused and adopts it.
            Ok(Err(e)) => {
                state.failed_renewals += 1;
                state.last_failure = Some(e.to_string());
                tracing::debug!("{node}: renewal of its announcement failed ({e}); trying again");
            }
            Err(e) => {
                tracing::warn!("{node}: renewals stop: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_reads_back() {
        let value = announcement("http://127.0.0.1:7878", 1_764_900_000_000);
        assert_eq!(value, "url=http://127.0.0.1:7878 started=1764900000000");
        assert_eq!(
            parse_announcement("alpha", 7, &value),
            Ok(Member {
                node: "alpha".into(),
                url: "http://127.0.0.1:7878".into(),
                started_ms: 1_764_900_000_000,
                revision: 7,
            })
        );
    }

    #[test]
    fn a_value_that_is_not_an_announcement_says_why() {
        let bad = parse_announcement("x", 3, "hello").unwrap_err();
        assert_eq!(bad.reason, "no url=<api url>");
        let bad = parse_announcement("x", 3, "url=http://a started=soon").unwrap_err();
        assert_eq!(bad.reason, "started= is not a number of milliseconds");
    }

    #[test]
    fn node_names_must_be_keys() {
        assert!(valid_key("alpha-1"));
        assert!(valid_key("eu.west.a"));
        assert!(!valid_key(""));
        assert!(!valid_key(".a"));
        assert!(!valid_key("a b"));
        assert!(!valid_key("a*"));
    }
}
