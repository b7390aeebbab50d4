//! Re-homing from the copy (issue 20, decision 5): a surviving region takes over the systems
//! of a lost region from its copy of the lost region's streams ([`rehome_from_copy`]). For each
//! system it writes the system's log messages (the system's log and its instances' logs) from
//! the copy into its own logs' stream under its own subjects, the same bytes, then the pair
//! subjects into those systems, then records the new home in the KV bucket [`HOMES_BUCKET`]
//! of its domain (key = system slug, value [`Home`]: the region and a home epoch above every
//! epoch the copy shows for that system). It returns the recovery point per system
//! ([`RecoveryPoint`]): what the copy held, and what the lost region may have acknowledged
//! after it.
//!
//! Idempotent: every message it writes carries [`COPIED_FROM_HEADER`] and
//! [`COPIED_SEQ_HEADER`] (the copy's sequence, the same as the lost stream's: a mirror keeps
//! sequences), `Nats-Msg-Id` = `rehome.<region>.<seq>.<subject>` and the expected last
//! sequence of its subject; a run after a crash starts on each subject after the copied
//! sequence its last copied message names, so it neither writes a message twice nor skips one
//! (a promotion's reconcile may have written after it: read from the subject's start).
//!
//! Snapshots are not copied: a snapshot records positions in the lost region's jumps stream
//! (stream sequences), which mean nothing in the survivor's; the promoted unit recovers from
//! its whole log (logs are never trimmed) and reads its re-homed pair subjects from the start,
//! where arrivals land each transfer once (mesh::protocol::arrivals).
//!
//! Never writes to the lost region or to a copy, never copies into a subject after messages the
//! survivor wrote itself (refused when the copy has more than what was copied), and never
//! changes a record's bytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use mesh::protocol::promote;
use serde::{Deserialize, Serialize};
use store::backend::{LogStore, SYSTEMS_PREFIX};

use crate::copies::{copy_status, CopyStatus};
use crate::error::is_wrong_last_sequence;
use crate::export::JumpsReader;
use crate::logs::{visit_messages, Next, EPOCH_HEADER, LOGS_STREAM, NODE_HEADER};
use crate::pairs::JUMPS_STREAM;
use crate::{region, subject, Nats, NatsError, NatsLogs};

/// The KV bucket of re-homed systems, in each region's domain.
pub const HOMES_BUCKET: &str = "mlt_homes";
/// The region a re-homed message was copied from.
pub const COPIED_FROM_HEADER: &str = "Mlt-Copied-From";
/// The copy's (and the lost stream's) sequence of a re-homed message.
pub const COPIED_SEQ_HEADER: &str = "Mlt-Copied-Seq";
/// Messages read from the copy before they are written, at most.
pub const REHOME_BATCH_MESSAGES: usize = 1_024;
/// How long one message's publish is retried (an election stops writes for 4-9 s), in
/// milliseconds.
pub const REHOME_PUBLISH_RETRY_FOR_MS: u64 = 30_000;
/// The pause between two attempts, in milliseconds.
pub const REHOME_RETRY_PAUSE_MS: u64 = 200;

/// A re-homed system's home as [`HOMES_BUCKET`] holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Home {
    pub region: String,
    /// The first epoch of the new home's generation (`promote::promoted_epoch`: generation <<
    /// 40), above every epoch the lost region could issue for the system: its new owner's
    /// epoch is `home_epoch + lease revision` (the generation above the revision).
    pub home_epoch: u64,
    /// The region it was re-homed from.
    pub from: String,
}

/// What may have been lost of one system: acknowledged by the lost region after the copy's
/// last message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub enum LostAfter {
    /// The lost region answered: exactly this many of the system's messages were not copied.
    Exactly { messages: u64 },
    /// It did not: `messages` after stream sequence `after_seq` were known not copied at the
    /// mirror's last contact (the whole stream's lag then), `last_contact_ms_ago` before the
    /// promotion. Not a bound: what the region acknowledged after that contact, or had on
    /// the link, is lost too and no one here can count it (issue 20's lagging-copy test: 0
    /// known, 21-23 really lost). Only the region's own streams, read again, say exactly.
    AsOfLastContact {
        messages: u64,
        after_seq: u64,
        last_contact_ms_ago: Option<u64>,
    },
}

/// The recovery point of one re-homed system.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecoveryPoint {
    pub system: String,
    /// Its logs found in the copy, with the last copied stream sequence of each.
    pub logs: BTreeMap<String, u64>,
    /// The highest of them (0: the copy holds nothing of the system).
    pub copied_last_seq: u64,
    /// The copy's newest message of the logs' stream: its sequence and time (ms since the
    /// Unix epoch): the recovery point of the whole copy.
    pub copy: Option<CopyStatus>,
    /// Log messages written into the survivor's stream by this run (a rerun writes only what
    /// a crashed run did not).
    pub messages_written: u64,
    /// Pair-subject messages (jumps into the system) written by this run.
    pub pair_messages_written: u64,
    pub home_epoch: u64,
    pub lost_after: LostAfter,
}

/// Re-homes `systems` (slugs) of region `lost` into this node's region from its copy (see the
/// module's comment): [`copy_systems`], then [`record_homes`] at once. A promotion that
/// reconciles (crate::reconcile) calls the two itself, the reconcile between them. Blocks.
pub fn rehome_from_copy(
    nats: &Nats,
    lost: &str,
    systems: &[String],
) -> Result<Vec<RecoveryPoint>, NatsError> {
    let points = copy_systems(nats, lost, systems)?;
    record_homes(nats, lost, &points)?;
    Ok(points)
}

/// The first half of a re-homing: freezes the copies of region `lost`'s streams
/// (crate::copies::freeze_copies: from then on they no longer follow `lost`), then writes each
/// system's logs and pair subjects from the copy into this node's region, and says the
/// recovery point of each, with its home epoch (`mesh::protocol::promote::promoted_epoch`:
/// the next home generation above every epoch the copy shows). Records no home: the
/// survivor's nodes do not serve the systems until [`record_homes`]. The copies must exist
/// (crate::copies::ensure_copies). One recovery point per system, in the order given.
pub fn copy_systems(
    nats: &Nats,
    lost: &str,
    systems: &[String],
) -> Result<Vec<RecoveryPoint>, NatsError> {
    let survivor = nats
        .region()
        .ok_or_else(|| NatsError::jetstream("re-homing", "this node is in no region"))?
        .to_string();
    if survivor == lost {
        return Err(NatsError::jetstream(
            format!("re-homing region {lost}"),
            "a region is re-homed into another one",
        ));
    }
    // How far behind the copy is, as the mirror last knew (before it is frozen).
    let status = copy_status(nats, lost)?;
    // The copy stops following the lost region: what is re-homed is what it holds now.
    crate::copies::freeze_copies(nats, lost)?;
    let copy_logs = NatsLogs::open_copy(nats, lost)?;
    let own_logs = own_stream(nats, LOGS_STREAM)?;
    let copy_jumps = JumpsReader::open_copy(nats, lost)?;
    let own_jumps = own_stream(nats, JUMPS_STREAM)?;
    let logs_status = status.iter().find(|s| s.stream == LOGS_STREAM).cloned();
    let names = copy_logs.list(SYSTEMS_PREFIX).map_err(|e| {
        NatsError::jetstream(format!("logs of the copy of region {lost}"), e.to_string())
    })?;
    let survivor_log_prefix = region::log_prefix(Some(&survivor));
    let mut points = Vec::new();
    for system in systems {
        let own_names: Vec<&String> = names
            .iter()
            .filter(|n| is_log_of_system(n, system))
            .collect();
        let mut logs = BTreeMap::new();
        let mut written = 0;
        let mut max_epoch = 0;
        for name in &own_names {
            let from_subject = copy_logs.subject_of(name);
            let to_subject = subject::of_log_with(&survivor_log_prefix, name);
            let copied = copy_subject(
                nats,
                copy_logs.stream(),
                &from_subject,
                &own_logs,
                &to_subject,
                lost,
            )?;
            written += copied.written;
            max_epoch = max_epoch.max(copied.max_epoch);
            logs.insert((*name).clone(), copied.last_seq);
        }
        let mut pair_written = 0;
        if let Some(jumps) = &copy_jumps {
            for (from_subject, from, to) in pair_subjects_into(nats, jumps, system)? {
                let to_subject =
                    subject::of_pair_with(&region::jump_prefix(Some(&survivor)), &from, &to);
                let copied = copy_subject(
                    nats,
                    jumps.stream(),
                    &from_subject,
                    &own_jumps,
                    &to_subject,
                    lost,
                )?;
                pair_written += copied.written;
                max_epoch = max_epoch.max(copied.max_epoch);
            }
        }
        // The copy lags: the lost region may have elected owners after its last message, so
        // the new home starts the next generation, above any epoch of the copy's.
        let copy_max_epoch = max_epoch.max(copied_lease_revision(nats, lost, system)?);
        let home_epoch =
            promote::promoted_epoch(promote::generation_of(copy_max_epoch), copy_max_epoch);
        let copied_last_seq = logs.values().copied().max().unwrap_or(0);
        let lost_after = lost_after(nats, lost, &copy_logs, &own_names, &logs, &logs_status);
        points.push(RecoveryPoint {
            system: system.clone(),
            logs,
            copied_last_seq,
            copy: logs_status.clone(),
            messages_written: written,
            pair_messages_written: pair_written,
            home_epoch,
            lost_after,
        });
    }
    Ok(points)
}

/// The second half of a re-homing: records each system of `points` as homed in this node's
/// region (from `lost`, at its home epoch) in [`HOMES_BUCKET`] of this region's domain. The
/// survivor's nodes claim them once the homes settle.
pub fn record_homes(nats: &Nats, lost: &str, points: &[RecoveryPoint]) -> Result<(), NatsError> {
    let survivor = nats
        .region()
        .ok_or_else(|| NatsError::jetstream("re-homing", "this node is in no region"))?
        .to_string();
    let homes = nats.open_bucket(async_nats::jetstream::kv::Config {
        bucket: HOMES_BUCKET.into(),
        history: 5,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })?;
    for point in points {
        let home = Home {
            region: survivor.clone(),
            home_epoch: point.home_epoch,
            from: lost.to_string(),
        };
        let value = serde_json::to_vec(&home).expect("a home serializes");
        let key = point.system.clone();
        let bucket = homes.clone();
        nats.bridge.run(async move {
            bucket
                .put(&key, value.into())
                .await
                .map_err(|e| NatsError::jetstream(format!("{HOMES_BUCKET} {key}"), e))
        })??;
    }
    Ok(())
}

/// The re-homed systems recorded in this node's region's [`HOMES_BUCKET`] (empty when it has
/// none).
pub fn homes(nats: &Nats) -> Result<BTreeMap<String, Home>, NatsError> {
    read_homes(nats, &nats.jetstream)
}

/// The re-homed systems recorded in region `region`'s [`HOMES_BUCKET`] (through the link);
/// an error when it does not answer.
pub fn homes_of(nats: &Nats, region: &str) -> Result<BTreeMap<String, Home>, NatsError> {
    let js = nats.jetstream_of(region);
    read_homes(nats, &js)
}

fn read_homes(
    nats: &Nats,
    js: &async_nats::jetstream::Context,
) -> Result<BTreeMap<String, Home>, NatsError> {
    use futures_util::StreamExt;
    let js = js.clone();
    nats.bridge.run(async move {
        let bucket = match js.get_key_value(HOMES_BUCKET).await {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::context::KeyValueErrorKind::GetBucket
                ) && e.to_string().contains("not found") =>
            {
                return Ok(BTreeMap::new())
            }
            Err(e) => return Err(NatsError::jetstream(format!("bucket {HOMES_BUCKET}"), e)),
        };
        let mut keys = bucket
            .keys()
            .await
            .map_err(|e| NatsError::jetstream(format!("keys of {HOMES_BUCKET}"), e))?;
        let mut out = BTreeMap::new();
        while let Some(key) = keys.next().await {
            let key =
                key.map_err(|e| NatsError::jetstream(format!("keys of {HOMES_BUCKET}"), e))?;
            let Some(value) = bucket
                .get(&key)
                .await
                .map_err(|e| NatsError::jetstream(format!("{HOMES_BUCKET} {key}"), e))?
            else {
                continue;
            };
            let home: Home = serde_json::from_slice(&value).map_err(|e| {
                NatsError::jetstream(format!("{HOMES_BUCKET} {key}"), format!("not a home: {e}"))
            })?;
            out.insert(key, home);
        }
        Ok(out)
    })?
}

/// Whether log `name` belongs to the unit of system `slug`: its own log or an instance's.
fn is_log_of_system(name: &str, slug: &str) -> bool {
    let Some(rest) = name.strip_prefix(SYSTEMS_PREFIX) else {
        return false;
    };
    rest == slug
        || rest
            .strip_prefix(slug)
            .is_some_and(|tail| tail.starts_with('.'))
}

/// A stream of this node's region, which must exist.
fn own_stream(nats: &Nats, name: &str) -> Result<Stream, NatsError> {
    let js = nats.jetstream.clone();
    let name = name.to_string();
    nats.bridge.run(async move {
        js.get_stream(&name)
            .await
            .map_err(|e| NatsError::jetstream(format!("stream {name} of this region"), e))
    })?
}

/// What copying one subject did.
struct Copied {
    /// The copy's sequence of the subject's last message (0: none).
    last_seq: u64,
    written: u64,
    max_epoch: u64,
}

/// Where the destination subject stands: the stream sequence of its last message copied from
/// `lost` and the copy's sequence that message names (0, 0: none), and whether this region
/// wrote the subject after it (a promotion's fence marks, reconcile records or republished
/// jumps, or its nodes' writes): then nothing more may be copied into it.
struct Destination {
    last_copied: u64,
    copied_upto: u64,
    written_after: bool,
}

/// The copy's sequence a message names, if it was copied from `lost`.
fn copied_seq(headers: Option<&async_nats::HeaderMap>, lost: &str) -> Option<u64> {
    let headers = headers?;
    let from = headers.get(COPIED_FROM_HEADER)?.as_str();
    let seq = headers
        .get(COPIED_SEQ_HEADER)?
        .as_str()
        .parse::<u64>()
        .ok()?;
    (from == lost).then_some(seq)
}

/// [`Destination`] of `subject` in `stream`: its last message if that was copied, else the
/// last copied one found by reading the subject from its start (a rerun of a promotion that
/// stopped after its reconcile wrote there).
async fn destination_last(
    stream: &Stream,
    subject: &str,
    lost: &str,
) -> Result<Destination, NatsError> {
    let last = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            return Ok(Destination {
                last_copied: 0,
                copied_upto: 0,
                written_after: false,
            })
        }
        Err(e) => {
            return Err(NatsError::jetstream(
                format!("last message of {subject}"),
                e,
            ))
        }
    };
    if let Some(seq) = copied_seq(Some(&last.headers), lost) {
        return Ok(Destination {
            last_copied: last.sequence,
            copied_upto: seq,
            written_after: false,
        });
    }
    let mut found = (0, 0);
    visit_messages(stream, subject, 1, last.sequence, |at, m| {
        if let Some(seq) = copied_seq(m.headers.as_ref(), lost) {
            found = (at, seq);
        }
        Next::More
    })
    .await?;
    Ok(Destination {
        last_copied: found.0,
        copied_upto: found.1,
        written_after: true,
    })
}

/// Copies the messages of `from_subject` in the copy stream `from` that `to_subject` of
/// stream `to` lacks, in order, same bytes and writer headers.
fn copy_subject(
    nats: &Nats,
    from: &Stream,
    from_subject: &str,
    to: &Stream,
    to_subject: &str,
    lost: &str,
) -> Result<Copied, NatsError> {
    let from = from.clone();
    let to = to.clone();
    let from_subject = from_subject.to_string();
    let to_subject = to_subject.to_string();
    let lost = lost.to_string();
    let js = nats.jetstream.clone();
    nats.bridge.run(async move {
        let last = match from.get_last_raw_message_by_subject(&from_subject).await {
            Ok(m) => m.sequence,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => 0,
            Err(e) => {
                return Err(NatsError::jetstream(
                    format!("last message of {from_subject}"),
                    e,
                ))
            }
        };
        let dest = destination_last(&to, &to_subject, &lost).await?;
        let (mut dest_last, mut copied_upto) = (dest.last_copied, dest.copied_upto);
        assert!(
            copied_upto <= last,
            "{to_subject} names copied sequence {copied_upto}, past the copy's last {last}"
        );
        if dest.written_after && copied_upto < last {
            return Err(NatsError::jetstream(
                format!("re-homing into {to_subject}"),
                format!("this region wrote the subject after its last message copied from region {lost} (copy sequence {copied_upto} of {last}): nothing written"),
            ));
        }
        let mut written = 0;
        let mut max_epoch = 0;
        while copied_upto < last {
            let mut batch = Vec::new();
            visit_messages(&from, &from_subject, copied_upto + 1, last, |seq, m| {
                let header = |name: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                batch.push((
                    seq,
                    header(NODE_HEADER),
                    header(EPOCH_HEADER),
                    m.payload.clone(),
                ));
                if batch.len() < REHOME_BATCH_MESSAGES {
                    Next::More
                } else {
                    Next::Stop
                }
            })
            .await?;
            assert!(!batch.is_empty(), "{from_subject}: messages up to {last}");
            for (seq, node, epoch, payload) in batch {
                assert!(seq > copied_upto, "{from_subject}: sequences increase");
                if let Some(e) = epoch.as_deref().and_then(|e| e.parse::<u64>().ok()) {
                    max_epoch = max_epoch.max(e);
                }
                let mut message = PublishMessage::build()
                    .payload(payload)
                    .message_id(format!("rehome.{lost}.{seq}.{to_subject}"))
                    .header(COPIED_FROM_HEADER, lost.as_str())
                    .header(COPIED_SEQ_HEADER, seq.to_string().as_str())
                    .expected_last_subject_sequence(dest_last);
                if let Some(node) = &node {
                    message = message.header(NODE_HEADER, node.as_str());
                }
                if let Some(epoch) = &epoch {
                    message = message.header(EPOCH_HEADER, epoch.as_str());
                }
                dest_last = publish_retrying(&js, &to, &to_subject, message, seq, &lost).await?;
                copied_upto = seq;
                written += 1;
            }
        }
        Ok(Copied {
            last_seq: last,
            written,
            max_epoch,
        })
    })?
}

/// Publishes one re-homed message until stored (or found stored: a lost ack), for
/// [`REHOME_PUBLISH_RETRY_FOR_MS`]; its stream sequence.
async fn publish_retrying(
    js: &async_nats::jetstream::Context,
    to: &Stream,
    to_subject: &str,
    message: PublishMessage,
    seq: u64,
    lost: &str,
) -> Result<u64, NatsError> {
    let started = Instant::now();
    loop {
        let outcome = match js
            .send_publish(to_subject.to_string(), message.clone())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let error = match outcome {
            Ok(ack) => return Ok(ack.sequence),
            Err(e) => e,
        };
        if is_wrong_last_sequence(&error) {
            // Stored by an attempt whose ack was lost, or a writer got in: the subject says.
            let dest = destination_last(to, to_subject, lost).await?;
            let copied = dest.copied_upto;
            if copied == seq && !dest.written_after {
                return Ok(dest.last_copied);
            }
            return Err(NatsError::jetstream(
                format!("re-homing into {to_subject}"),
                format!("another writer got in (its last message names copied sequence {copied}, this one is {seq}): {error}"),
            ));
        }
        if started.elapsed() > Duration::from_millis(REHOME_PUBLISH_RETRY_FOR_MS) {
            return Err(NatsError::jetstream(
                format!("re-homing into {to_subject} (tried for {REHOME_PUBLISH_RETRY_FOR_MS} ms)"),
                error,
            ));
        }
        tokio::time::sleep(Duration::from_millis(REHOME_RETRY_PAUSE_MS)).await;
    }
}

/// The pair subjects of the copy's jumps' stream into system `slug`: (subject, from, to).
fn pair_subjects_into(
    nats: &Nats,
    jumps: &JumpsReader,
    slug: &str,
) -> Result<Vec<(String, String, String)>, NatsError> {
    use futures_util::TryStreamExt;
    let stream = jumps.stream().clone();
    let prefix = jumps.prefix().to_string();
    let filter = format!("{prefix}>");
    let subjects: Vec<(String, usize)> = nats.bridge.run(async move {
        let info = stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| NatsError::jetstream("subjects of the jumps' copy", e))?;
        info.try_collect()
            .await
            .map_err(|e| NatsError::jetstream("subjects of the jumps' copy", e))
    })??;
    let mut out: Vec<(String, String, String)> = subjects
        .into_iter()
        .filter_map(|(s, _)| {
            let (from, to) = subject::to_pair_with(&prefix, &s)?;
            (to == slug).then_some((s, from, to))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The revision of the lease of `sys.<slug>` in the copy of `lost`'s leases bucket (0: none):
/// an epoch the system was held under.
fn copied_lease_revision(nats: &Nats, lost: &str, slug: &str) -> Result<u64, NatsError> {
    let name = region::copy_name(&format!("KV_{}", crate::lease::LEASES_BUCKET), lost);
    let js = nats.jetstream.clone();
    let subject = format!("$KV.{}.sys.{slug}", crate::lease::LEASES_BUCKET);
    nats.bridge.run(async move {
        let stream = match js.get_stream(&name).await {
            Ok(s) => s,
            Err(_) => return Ok(0),
        };
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
            Err(e) => Err(NatsError::jetstream(
                format!("last message of {subject} in {name}"),
                e,
            )),
        }
    })?
}

/// What the lost region may have acknowledged after the copy, for one system.
fn lost_after(
    nats: &Nats,
    lost: &str,
    copy: &NatsLogs,
    names: &[&String],
    copied: &BTreeMap<String, u64>,
    status: &Option<CopyStatus>,
) -> LostAfter {
    if status.as_ref().is_some_and(|s| s.reachable) {
        let remote = nats.jetstream_of(lost);
        let subjects: Vec<(String, u64)> = names
            .iter()
            .map(|n| (copy.subject_of(n), copied.get(*n).copied().unwrap_or(0)))
            .collect();
        let exact = nats.bridge.run(async move {
            let stream = remote.get_stream(LOGS_STREAM).await.ok()?;
            let mut total = 0u64;
            for (subject, after) in subjects {
                let last = match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(m) => m.sequence,
                    Err(_) => continue,
                };
                if last > after {
                    let mut n = 0u64;
                    visit_messages(&stream, &subject, after + 1, last, |_, _| {
                        n += 1;
                        Next::More
                    })
                    .await
                    .ok()?;
                    total += n;
                }
            }
            Some(total)
        });
        if let Ok(Some(messages)) = exact {
            return LostAfter::Exactly { messages };
        }
    }
    let (messages, after_seq, active) = match status {
        Some(s) => (s.lag_messages, s.copied_last_seq, s.active_ms),
        None => (0, 0, None),
    };
    LostAfter::AsOfLastContact {
        messages,
        after_seq,
        last_contact_ms_ago: active,
    }
}
