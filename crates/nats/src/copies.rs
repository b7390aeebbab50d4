//! The copy (issue 20, decision 4): each region holds a mirror of every other region's streams
//! in its own domain, named `<STREAM>_OF_<region>` (`MLT_LOGS_OF_us` in domain `eu`), sourced
//! through the other domain's API prefix (`$JS.us.API`) over the leafnode link. This module
//! makes those mirrors ([`ensure_copies`]) and says how far behind each is ([`copy_status`]:
//! [`CopyStatus`]). A mirror keeps its source's sequence numbers, so the lag in messages is
//! the source's last sequence minus the copy's, exactly.
//!
//! Reading a copy: `NatsLogs::open_copy` (read-only logs) and `export::JumpsReader::open_copy`.
//!
//! Never writes to a copy (the server's mirror does), never writes to another region, and
//! never waits for an unreachable region longer than [`SOURCE_TIMEOUT_MS`].

use std::time::{Duration, SystemTime};

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config, External, Source, StorageType};
use async_nats::jetstream::ErrorCode;
use serde::Serialize;

use crate::accounts::ACCOUNTS_BUCKET;
use crate::lease::LEASES_BUCKET;
use crate::logs::LOGS_STREAM;
use crate::pairs::JUMPS_STREAM;
use crate::snapshots::SNAPSHOTS_BUCKET;
use crate::{region, Nats, NatsError};

/// How long a question to another region may take before it counts as unreachable, in
/// milliseconds.
pub const SOURCE_TIMEOUT_MS: u64 = 2_000;

/// The streams of a region that every other region copies: the logs, the jumps, the leases'
/// and accounts' buckets (`KV_<bucket>`) and the snapshots' object store (`OBJ_<bucket>`).
pub fn copied_streams() -> Vec<String> {
    vec![
        LOGS_STREAM.to_string(),
        JUMPS_STREAM.to_string(),
        format!("KV_{LEASES_BUCKET}"),
        format!("KV_{ACCOUNTS_BUCKET}"),
        format!("OBJ_{SNAPSHOTS_BUCKET}"),
    ]
}

/// How far one copy is behind its source.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CopyStatus {
    /// The source stream, in region `region`.
    pub stream: String,
    pub region: String,
    /// The copy, in this node's region.
    pub copy: String,
    /// The last sequence the copy holds (0: none), and when that message was stored at the
    /// source (its timestamp travels with it), in milliseconds since the Unix epoch.
    pub copied_last_seq: u64,
    pub copied_last_time_ms: Option<u64>,
    /// The source's last sequence, when it answered now.
    pub source_last_seq: Option<u64>,
    /// Messages the copy lacks: from the source's answer now, else the server's own estimate
    /// (the mirror's `lag`, as of its last contact with the source).
    pub lag_messages: u64,
    /// How stale the copy is, in seconds: 0 when it lacks nothing; else the age of the oldest
    /// message it lacks when the source answered, or of its newest message when it did not
    /// (an upper bound of what the copy shows).
    pub lag_s: f64,
    /// Since when the mirror last heard from its source, in milliseconds (the server's
    /// `mirror.active`), if it has.
    pub active_ms: Option<u64>,
    /// Whether the source region answered now (about this stream, or that it has none).
    pub reachable: bool,
    /// The source region answered that it has no such stream (nothing to copy yet).
    pub source_missing: bool,
}

/// What the source region answered about one stream.
enum SourceAnswer {
    /// Its last sequence and, if the copy lacks messages, the time of the first it lacks.
    Last(u64, Option<SystemTime>),
    /// It has no such stream.
    Missing,
    /// No answer within [`SOURCE_TIMEOUT_MS`].
    Unreachable,
}

/// Makes (or keeps) the copies, in this node's region, of every stream of [`copied_streams`]
/// of `of_region`, with `replicas` copies each. Needs no link to `of_region` (a mirror starts
/// copying when its source answers). Returns the copies' names. An existing stream of a
/// copy's name that is not that mirror is refused.
pub fn ensure_copies(
    nats: &Nats,
    of_region: &str,
    replicas: usize,
) -> Result<Vec<String>, NatsError> {
    let own = nats
        .region()
        .ok_or_else(|| NatsError::jetstream("copies", "this node is in no region"))?
        .to_string();
    assert!(replicas >= 1, "a stream has at least one replica");
    if own == of_region {
        return Err(NatsError::jetstream(
            format!("copies of region {of_region}"),
            "a region does not copy itself",
        ));
    }
    let mut made = Vec::new();
    for stream in copied_streams() {
        let name = region::copy_name(&stream, of_region);
        let source = Source {
            name: stream.clone(),
            external: Some(External {
                api_prefix: region::api_prefix(of_region),
                delivery_prefix: None,
            }),
            ..Default::default()
        };
        let config = Config {
            name: name.clone(),
            storage: StorageType::File,
            num_replicas: replicas,
            mirror: Some(source.clone()),
            allow_direct: true,
            ..Default::default()
        };
        let js = nats.jetstream.clone();
        let what = format!("cannot make the copy {name} of {stream} of region {of_region}");
        let found = nats.bridge.run(async move {
            let stream = js
                .get_or_create_stream(config)
                .await
                .map_err(|e| NatsError::jetstream(what, e))?;
            Ok::<_, NatsError>(stream.cached_info().config.mirror.clone())
        })??;
        let is_mirror = found.as_ref().is_some_and(|m| {
            m.name == source.name
                && m.external.as_ref().map(|e| e.api_prefix.as_str())
                    == Some(source.external.as_ref().unwrap().api_prefix.as_str())
        });
        if !is_mirror {
            return Err(NatsError::jetstream(
                format!("stream {name}"),
                format!("exists but is not a mirror of {stream} of region {of_region} (it mirrors {found:?})"),
            ));
        }
        made.push(name);
    }
    Ok(made)
}

/// The state of every copy of `of_region`'s streams in this node's region (a copy not made
/// yet is left out), asking `of_region` for its last sequences with [`SOURCE_TIMEOUT_MS`].
pub fn copy_status(nats: &Nats, of_region: &str) -> Result<Vec<CopyStatus>, NatsError> {
    let js = nats.jetstream.clone();
    let client = nats.client.clone();
    let of_region = of_region.to_string();
    nats.bridge.run(async move {
        // Built on the bridge's runtime: a context spawns its ack task.
        let remote = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(SOURCE_TIMEOUT_MS))
            .api_prefix(region::api_prefix(&of_region))
            .build(client);
        let mut out = Vec::new();
        for stream in copied_streams() {
            let name = region::copy_name(&stream, &of_region);
            let mut copy = match js.get_stream(&name).await {
                Ok(copy) => copy,
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(error)
                        if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        continue
                    }
                    _ => return Err(NatsError::jetstream(format!("copy {name}"), e)),
                },
            };
            let info = copy
                .info()
                .await
                .map_err(|e| NatsError::jetstream(format!("copy {name}"), e))?
                .clone();
            let copied_last_seq = info.state.last_sequence;
            let copied_last_time =
                (info.state.messages > 0).then(|| SystemTime::from(info.state.last_timestamp));
            let mirror = info.mirror.clone();
            let source = remote_last(&remote, &stream, copied_last_seq).await;
            let now = SystemTime::now();
            let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs_f64();
            let reachable = !matches!(source, SourceAnswer::Unreachable);
            let source_missing = matches!(source, SourceAnswer::Missing);
            let (source_last_seq, lag_messages, lag_s) = match source {
                SourceAnswer::Missing => (None, 0, 0.0),
                SourceAnswer::Last(last, first_missing_time) => {
                    let lag = last.saturating_sub(copied_last_seq);
                    let lag_s = if lag == 0 {
                        0.0
                    } else {
                        first_missing_time.map(age).unwrap_or(0.0)
                    };
                    (Some(last), lag, lag_s)
                }
                SourceAnswer::Unreachable => {
                    let lag = mirror.as_ref().map(|m| m.lag).unwrap_or(0);
                    (None, lag, copied_last_time.map(age).unwrap_or(0.0))
                }
            };
            out.push(CopyStatus {
                stream: stream.clone(),
                region: of_region.clone(),
                copy: name,
                copied_last_seq,
                copied_last_time_ms: copied_last_time.map(unix_ms),
                reachable,
                source_missing,
                source_last_seq,
                lag_messages,
                lag_s,
                active_ms: mirror
                    .and_then(|m| m.active)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            });
        }
        Ok(out)
    })?
}

/// What the source region answers about `stream` within [`SOURCE_TIMEOUT_MS`] per request.
async fn remote_last(
    remote: &async_nats::jetstream::Context,
    stream: &str,
    copied_last_seq: u64,
) -> SourceAnswer {
    let timeout = Duration::from_millis(SOURCE_TIMEOUT_MS);
    let mut source = match tokio::time::timeout(timeout, remote.get_stream(stream)).await {
        Ok(Ok(source)) => source,
        Ok(Err(e)) => {
            return match e.kind() {
                GetStreamErrorKind::JetStream(error)
                    if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    SourceAnswer::Missing
                }
                _ => SourceAnswer::Unreachable,
            }
        }
        Err(_) => return SourceAnswer::Unreachable,
    };
    let info = match tokio::time::timeout(timeout, source.info()).await {
        Ok(Ok(info)) => info.clone(),
        _ => return SourceAnswer::Unreachable,
    };
    let last = info.state.last_sequence;
    if last <= copied_last_seq {
        return SourceAnswer::Last(last, None);
    }
    let first_missing = (copied_last_seq + 1).max(info.state.first_sequence);
    let time = match tokio::time::timeout(timeout, source.get_raw_message(first_missing)).await {
        Ok(Ok(message)) => Some(SystemTime::from(message.time)),
        _ => None,
    };
    SourceAnswer::Last(last, time)
}

/// `t` in milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Freezes every copy of `of_region`'s streams in this node's region: each mirror becomes a
/// plain stream that no longer follows its source (the engine's mirror promotion, 2.12 and
/// newer: the mirror's configuration removed). A promotion does this first, so that the copy
/// it re-homes from stays what it was, and what the lost region acknowledged after it can be
/// counted exactly once that region answers again. A copy frozen already is left as it is.
pub fn freeze_copies(nats: &Nats, of_region: &str) -> Result<Vec<String>, NatsError> {
    let js = nats.jetstream.clone();
    let of_region = of_region.to_string();
    nats.bridge.run(async move {
        let mut frozen = Vec::new();
        for stream in copied_streams() {
            let name = region::copy_name(&stream, &of_region);
            let mut copy = match js.get_stream(&name).await {
                Ok(copy) => copy,
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(error)
                        if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        continue
                    }
                    _ => return Err(NatsError::jetstream(format!("copy {name}"), e)),
                },
            };
            let mut config = copy
                .info()
                .await
                .map_err(|e| NatsError::jetstream(format!("copy {name}"), e))?
                .config
                .clone();
            if config.mirror.is_none() {
                frozen.push(name);
                continue;
            }
            config.mirror = None;
            js.update_stream(config).await.map_err(|e| {
                NatsError::jetstream(
                    format!("cannot freeze the copy {name} (promote its mirror)"),
                    e,
                )
            })?;
            frozen.push(name);
        }
        Ok(frozen)
    })?
}
