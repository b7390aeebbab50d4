//! Snapshots in a JetStream object store: [`NatsSnapshots`] implements [`SnapshotStore`] on the
//! bucket [`SNAPSHOTS_BUCKET`] (file storage, replicated like the logs' stream), and keeps the
//! galaxy's definition ([`GALAXY_OBJECT`]) beside them, so that every node and `mltrader export`
//! find the same galaxy.
//!
//! One object is one snapshot, named `<log>@<upto>` (`sol@1200`, `_transitions@88`: the name
//! the shard gives its snapshots, then the last record it includes). The object store writes
//! names base64-encoded into its subjects, so any log name works, and `@` never occurs in a
//! galaxy's object name.
//!
//! Durability: a put publishes the object's chunks and then its metadata, each waiting for the
//! stream's ack (a quorum of replicas on disk, the servers syncing every write). The object
//! exists only once its metadata is stored, so a put cut short leaves no visible object (its
//! chunks stay in the stream, unreferenced, until a node's start purges those older than
//! [`ORPHAN_CHUNKS_MIN_AGE_S`]). A failed put is sent again whole, within
//! [`SNAPSHOT_RETRY_FOR_MS`] (an election stops writes for 4-9 s). A get checks the object
//! store's SHA-256 digest and the size, then validates the snapshot's structure
//! ([`store::snapshot::load_bytes`]) before one body record reaches the caller; a missing,
//! torn or damaged object is an error naming the object and what is wrong with it.
//!
//! Reads of an object's metadata go to the stream leader: the bucket's stream has
//! `allow_direct` turned off here, because a direct get may be answered by a follower that has
//! not received the last put yet (right after a takeover, a snapshot would look missing).
//!
//! This module never interprets a snapshot's body and never touches a log.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::stream::Stream;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use store::backend::{SnapshotStore, Visit};
use store::snapshot::{self, SnapshotError, SnapshotMeta, SNAPSHOTS_KEPT};

use crate::limits::{
    ORPHAN_CHUNKS_MIN_AGE_S, SNAPSHOT_ATTEMPT_TIMEOUT_MS, SNAPSHOT_RETRY_FOR_MS,
    SNAPSHOT_RETRY_PAUSE_MS,
};
use crate::{Nats, NatsError};

/// The object store bucket of a galaxy's snapshots (its stream is `OBJ_mlt_snapshots`).
pub const SNAPSHOTS_BUCKET: &str = "mlt_snapshots";

/// The object that holds the galaxy's definition, the `galaxy.toml` of a local data directory.
pub const GALAXY_OBJECT: &str = "galaxy.toml";

/// The object name of the snapshot of log `name` up to record `upto`.
pub fn object_name(name: &str, upto: u64) -> String {
    assert!(!name.is_empty(), "a snapshot belongs to a named log");
    format!("{name}@{upto}")
}

/// The log name and `upto` of a snapshot's object name, if it is one.
pub fn parse_object_name(object: &str) -> Option<(&str, u64)> {
    let (name, upto) = object.rsplit_once('@')?;
    let digits_only = !upto.is_empty() && upto.bytes().all(|b| b.is_ascii_digit());
    (digits_only && !name.is_empty()).then_some(())?;
    Some((name, upto.parse().ok()?))
}

/// The snapshots of a galaxy in the object store bucket it was opened on.
pub struct NatsSnapshots {
    nats: Nats,
    bucket: String,
    store: ObjectStore,
    /// The bucket's stream, whose chunks [`read_chunks`] reads.
    stream: Stream,
}

/// Why one attempt at the object store failed: worth another try, or final.
enum Attempt {
    Transient(String),
    Final(SnapshotError),
}

impl NatsSnapshots {
    /// Opens the bucket `bucket` ([`SNAPSHOTS_BUCKET`] in production), creating it if needed
    /// with file storage and `replicas` copies, and turns off direct gets on its stream (see
    /// the module's comment). An existing bucket with other replicas or storage is refused.
    pub fn open(nats: &Nats, bucket: &str, replicas: usize) -> Result<NatsSnapshots, NatsError> {
        assert!(replicas >= 1, "a bucket has at least one replica");
        let js = nats.jetstream.clone();
        let bucket_name = bucket.to_string();
        let store = nats.bridge.run(async move {
            let stream_name = format!("OBJ_{bucket_name}");
            let what = || format!("object store bucket {bucket_name}");
            let stream = match js.get_stream(&stream_name).await {
                Ok(stream) => stream,
                Err(_) => {
                    let created = js
                        .create_object_store(object_store::Config {
                            bucket: bucket_name.clone(),
                            description: Some("mltrader: the galaxy's snapshots".into()),
                            storage: StorageType::File,
                            num_replicas: replicas,
                            ..Default::default()
                        })
                        .await;
                    // Another node may have created it meanwhile: read it either way.
                    let stream = js.get_stream(&stream_name).await;
                    match (created, stream) {
                        (_, Ok(stream)) => stream,
                        (Err(e), Err(_)) => return Err(NatsError::jetstream(what(), e)),
                        (Ok(_), Err(e)) => return Err(NatsError::jetstream(what(), e)),
                    }
                }
            };
            let mut config = stream.cached_info().config.clone();
            if config.num_replicas != replicas || config.storage != StorageType::File {
                return Err(NatsError::jetstream(
                    what(),
                    format!(
                        "exists with {} replicas and {:?} storage; this node wants {replicas} and file storage (num_replicas, storage)",
                        config.num_replicas, config.storage
                    ),
                ));
            }
            if config.allow_direct {
                config.allow_direct = false;
                js.update_stream(&config)
                    .await
                    .map_err(|e| NatsError::jetstream(format!("{}: turning off direct gets", what()), e))?;
            }
            // Fetched after the update, so that the store reads metadata from the leader.
            let store = js
                .get_object_store(&bucket_name)
                .await
                .map_err(|e| NatsError::jetstream(what(), e))?;
            let stream = js
                .get_stream(&stream_name)
                .await
                .map_err(|e| NatsError::jetstream(what(), e))?;
            Ok((store, stream))
        })??;
        let (store, stream) = store;
        let snapshots = NatsSnapshots {
            nats: nats.clone(),
            bucket: bucket.to_string(),
            store,
            stream,
        };
        match snapshots.sweep_orphan_chunks(Duration::from_secs(ORPHAN_CHUNKS_MIN_AGE_S)) {
            Ok(0) => {}
            Ok(n) => tracing::info!("{bucket}: purged the chunks of {n} puts cut short"),
            Err(e) => tracing::warn!("{bucket}: could not sweep the chunks of puts cut short: {e}"),
        }
        Ok(snapshots)
    }

    /// Purges the chunks no object refers to that are older than `older_than` (a put cut
    /// short leaves its chunks, and its retry writes new ones under a new id); returns how many
    /// objects' worth of chunks it purged. The age keeps a put in progress (its metadata not
    /// published yet) safe: [`ORPHAN_CHUNKS_MIN_AGE_S`] at a node's start.
    pub fn sweep_orphan_chunks(&self, older_than: Duration) -> Result<u64, SnapshotError> {
        let shown = format!("nats:{} (chunks)", self.bucket);
        let referred: std::collections::BTreeSet<String> = self
            .retrying(&shown, || {
                let store = self.store.clone();
                async move {
                    let list = store.list().await.map_err(|e| e.to_string())?;
                    let infos: Vec<object_store::ObjectInfo> =
                        list.try_collect().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(infos.into_iter().map(|i| i.nuid).collect::<Vec<_>>())
                }
            })?
            .into_iter()
            .collect();
        let prefix = format!("$O.{}.C.", self.bucket);
        let stream = self.stream.clone();
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let min_age_s = older_than.as_secs() as i64;
        self.retrying(&shown, || {
            let stream = stream.clone();
            let prefix = prefix.clone();
            let referred = referred.clone();
            async move {
                let info = stream
                    .info_with_subjects(format!("{prefix}>"))
                    .await
                    .map_err(|e| e.to_string())?;
                let subjects: Vec<(String, usize)> =
                    info.try_collect().await.map_err(|e| e.to_string())?;
                let mut purged = 0u64;
                for (subject, _) in subjects {
                    let Some(nuid) = subject.strip_prefix(&prefix) else {
                        continue;
                    };
                    if referred.contains(nuid) {
                        continue;
                    }
                    let last = stream
                        .get_last_raw_message_by_subject(&subject)
                        .await
                        .map_err(|e| e.to_string())?;
                    if now_s - last.time.unix_timestamp() < min_age_s {
                        continue;
                    }
                    stream
                        .purge()
                        .filter(&subject)
                        .await
                        .map_err(|e| e.to_string())?;
                    purged += 1;
                }
                Ok::<_, String>(purged)
            }
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Every snapshot in the bucket, as (log name, upto), sorted.
    pub fn all(&self) -> Result<Vec<(String, u64)>, SnapshotError> {
        let shown = format!("nats:{}", self.bucket);
        let names = self.retrying(&shown, || {
            let store = self.store.clone();
            async move {
                let list = store.list().await.map_err(|e| e.to_string())?;
                let infos: Vec<object_store::ObjectInfo> =
                    list.try_collect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(infos.into_iter().map(|i| i.name).collect::<Vec<_>>())
            }
        })?;
        let mut all: Vec<(String, u64)> = names
            .iter()
            .filter_map(|n| parse_object_name(n).map(|(name, upto)| (name.to_string(), upto)))
            .collect();
        all.sort();
        Ok(all)
    }

    /// The stored bytes of the snapshot of `name` up to `upto`, checked whole (digest, size,
    /// structure, and that it is the snapshot its name says), as a file would hold them.
    pub fn bytes_of(&self, name: &str, upto: u64) -> Result<Vec<u8>, SnapshotError> {
        let shown = self.describe(name, upto);
        let bytes = self.object_bytes(&object_name(name, upto), &shown)?;
        let meta = snapshot::load_bytes(&shown, &bytes, |_| Ok(()))?;
        if meta.name != name || meta.upto_seq != upto {
            return Err(SnapshotError::Invalid {
                path: shown,
                reason: format!(
                    "holds the snapshot of log {:?} up to record {}, not {name:?} up to {upto}",
                    meta.name, meta.upto_seq
                ),
            });
        }
        Ok(bytes)
    }

    /// The galaxy's definition kept in the bucket, if any.
    pub fn galaxy(&self) -> Result<Option<Vec<u8>>, SnapshotError> {
        let shown = format!("nats:{}/{GALAXY_OBJECT}", self.bucket);
        match self.object_bytes(GALAXY_OBJECT, &shown) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(SnapshotError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps `local` (a node's `galaxy.toml`) as the galaxy's definition if the bucket has none
    /// yet; refuses a node whose galaxy differs from the one kept (its system ids would not
    /// match the logs).
    pub fn keep_galaxy(&self, local: &[u8], local_shown: &str) -> Result<(), SnapshotError> {
        let shown = format!("nats:{}/{GALAXY_OBJECT}", self.bucket);
        match self.galaxy()? {
            Some(kept) if kept == local => Ok(()),
            Some(_) => Err(SnapshotError::Invalid {
                path: shown,
                reason: format!(
                    "the galaxy kept in JetStream differs from {local_shown}; start this node with the galaxy the cluster runs (mltrader export writes it to DIR/galaxy.toml) or with an empty --data"
                ),
            }),
            None => self.put_object(GALAXY_OBJECT, local, &shown),
        }
    }

    /// Reads object `object` whole, checking its chunk count, size and SHA-256 digest against
    /// its metadata. (Read here rather than through async-nats's reader, which panics on a
    /// chunk its metadata does not count.)
    fn object_bytes(&self, object: &str, shown: &str) -> Result<Vec<u8>, SnapshotError> {
        self.retrying(shown, || {
            let store = self.store.clone();
            let stream = self.stream.clone();
            let object = object.to_string();
            let shown = shown.to_string();
            async move {
                let info = match store.info(&object).await {
                    Ok(info) if !info.deleted => info,
                    Ok(_) => return Err(Attempt::Final(not_found(shown))),
                    Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => {
                        return Err(Attempt::Final(not_found(shown)))
                    }
                    Err(e) => return Err(Attempt::Transient(e.to_string())),
                };
                read_chunks(stream, info, shown).await
            }
        })
    }

    /// Stores `bytes` as object `object`, durably (every chunk and the metadata acked).
    fn put_object(&self, object: &str, bytes: &[u8], shown: &str) -> Result<(), SnapshotError> {
        let size = self.retrying(shown, || {
            let store = self.store.clone();
            let object = object.to_string();
            let bytes = bytes.to_vec();
            async move {
                let info = store
                    .put(object.as_str(), &mut bytes.as_slice())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(info.size)
            }
        })?;
        assert_eq!(
            size,
            bytes.len(),
            "{shown}: the object store kept every byte"
        );
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails for good, or [`SNAPSHOT_RETRY_FOR_MS`] has
    /// passed; each attempt may take [`SNAPSHOT_ATTEMPT_TIMEOUT_MS`].
    fn retrying<T, E, F, Fut>(&self, shown: &str, mut attempt: F) -> Result<T, SnapshotError>
    where
        T: Send + 'static,
        E: Into<Attempt> + Send + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let timeout = Duration::from_millis(SNAPSHOT_ATTEMPT_TIMEOUT_MS);
            let future = attempt();
            let outcome = self
                .nats
                .bridge
                .run(async move { tokio::time::timeout(timeout, future).await })
                .map_err(|e| SnapshotError::Io {
                    path: shown.to_string(),
                    error: e.into_io(),
                })?;
            let reason = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => match e.into() {
                    Attempt::Final(e) => return Err(e),
                    Attempt::Transient(reason) => reason,
                },
                Err(_) => format!("no answer within {SNAPSHOT_ATTEMPT_TIMEOUT_MS} ms"),
            };
            if started.elapsed() >= Duration::from_millis(SNAPSHOT_RETRY_FOR_MS) {
                return Err(SnapshotError::Io {
                    path: shown.to_string(),
                    error: std::io::Error::other(format!(
                        "failed after {attempts} attempts over {} ms: {reason}; is the NATS cluster up, with a quorum?",
                        started.elapsed().as_millis()
                    )),
                });
            }
            tracing::debug!("{shown}: attempt {attempts}: {reason}; retrying");
            std::thread::sleep(Duration::from_millis(SNAPSHOT_RETRY_PAUSE_MS));
        }
    }
}

fn not_found(shown: String) -> SnapshotError {
    SnapshotError::Io {
        path: shown,
        error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such object in the bucket"),
    }
}

/// The chunks of the object `info` describes, in order, checked against its metadata: as many
/// chunks as it counts and no more, its size, and its SHA-256 digest.
async fn read_chunks(
    stream: Stream,
    info: object_store::ObjectInfo,
    shown: String,
) -> Result<Vec<u8>, Attempt> {
    let damaged = |reason: String| {
        Attempt::Final(SnapshotError::Invalid {
            path: shown.clone(),
            reason: format!("{reason}: torn or damaged"),
        })
    };
    let mut bytes = Vec::with_capacity(info.size);
    if info.chunks > 0 {
        let subject = format!("$O.{}.C.{}", info.bucket, info.nuid);
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                ..Default::default()
            })
            .await
            .map_err(|e| Attempt::Transient(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| Attempt::Transient(e.to_string()))?;
        for chunk in 1..=info.chunks {
            let message = messages
                .next()
                .await
                .ok_or_else(|| Attempt::Transient("the chunks' consumer ended".into()))?
                .map_err(|e| Attempt::Transient(e.to_string()))?;
            let pending = message
                .info()
                .map_err(|e| Attempt::Transient(e.to_string()))?
                .pending;
            bytes.extend_from_slice(&message.payload);
            let expected_pending = (info.chunks - chunk) as u64;
            if pending != expected_pending {
                return Err(damaged(format!(
                    "the object has {} chunks, its metadata says {}",
                    chunk as u64 + pending,
                    info.chunks
                )));
            }
        }
    }
    if bytes.len() != info.size {
        return Err(damaged(format!(
            "its chunks hold {} bytes, its metadata says {}",
            bytes.len(),
            info.size
        )));
    }
    let digest = format!("SHA-256={}", base64_url(&Sha256::digest(&bytes)));
    if info.digest.as_deref() != Some(digest.as_str()) {
        return Err(damaged(format!(
            "its bytes do not match the SHA-256 digest of its metadata ({digest}, metadata {:?})",
            info.digest
        )));
    }
    Ok(bytes)
}

/// `bytes` in URL-safe base64 with padding, as the object store writes digests.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl From<String> for Attempt {
    fn from(reason: String) -> Attempt {
        Attempt::Transient(reason)
    }
}

impl SnapshotStore for NatsSnapshots {
    fn put(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), SnapshotError> {
        let shown = self.describe(&meta.name, meta.upto_seq);
        self.put_object(&object_name(&meta.name, meta.upto_seq), bytes, &shown)?;
        self.keep_newest(&meta.name, SNAPSHOTS_KEPT)
    }

    fn list(&self, name: &str) -> Result<Vec<u64>, SnapshotError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, upto)| upto)
            .collect())
    }

    fn get(&self, name: &str, upto: u64, visit: Visit<'_>) -> Result<SnapshotMeta, SnapshotError> {
        let bytes = self.bytes_of(name, upto)?;
        snapshot::load_bytes(&self.describe(name, upto), &bytes, |r| visit(r))
    }

    fn keep_newest(&self, name: &str, keep: usize) -> Result<(), SnapshotError> {
        let uptos = self.list(name)?;
        let old = uptos.len().saturating_sub(keep);
        for &upto in &uptos[..old] {
            let shown = self.describe(name, upto);
            self.retrying(&shown, || {
                let store = self.store.clone();
                let object = object_name(name, upto);
                async move {
                    match store.delete(&object).await {
                        Ok(()) => Ok(()),
                        // Another writer of the same log pruned it first.
                        Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            })?;
        }
        Ok(())
    }

    fn describe(&self, name: &str, upto: u64) -> String {
        format!("nats:{}/{}", self.bucket, object_name(name, upto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_written_as_the_object_store_writes_them() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg==");
        assert_eq!(base64_url(b"fo"), "Zm8=");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(&[0xfb, 0xff, 0xbf]), "-_-_");
    }

    #[test]
    fn object_names_round_trip_and_never_look_like_the_galaxy() {
        for (name, upto) in [("sol", 1200), ("_transitions", 0), ("sol.2", 7), ("a@b", 3)] {
            assert_eq!(
                parse_object_name(&object_name(name, upto)),
                Some((name, upto))
            );
        }
        assert_eq!(parse_object_name(GALAXY_OBJECT), None);
        assert_eq!(parse_object_name("sol@"), None);
        assert_eq!(parse_object_name("sol@+3"), None);
        assert_eq!(parse_object_name("@3"), None);
    }
}
