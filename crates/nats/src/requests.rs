//! Requests of players carried to the node that owns their star system (issue 19, decision 9),
//! over core NATS request/reply on `mlt.req.<unit>` ([`subject_of_unit`]).
//!
//! - [`Responder`]: the owner of a unit subscribes the unit's subject in the queue group
//!   [`OWNERS_QUEUE`] (one member answers each request) once it is fenced, and hands each
//!   request to the node's handler; dropping it unsubscribes (a node drops it when it hands the
//!   unit over). A request already received is still answered.
//! - [`Requester::forward`]: sends one request and waits for the answer. The owner sends a
//!   receipt ([`RECEIVED_HEADER`]) and writes it out before it runs the request. "No
//!   responders" (the server knows nobody subscribed: a takeover or hand-over under way, or
//!   the owner's subscription not yet known to this server) and silence (no receipt: lost
//!   between the servers) are sent again for at most [`NO_RESPONDERS_RETRY_FOR_MS`]. A request whose receipt came and
//!   whose answer did not in time is **never** sent again: its outcome is unknown
//!   ([`RequestError::OutcomeUnknown`], with the request's id).
//!
//! The payloads are opaque bytes (the API's `api::forward` JSON, which this crate, below the
//! api crate, never reads). This module never retries a request that may have been delivered,
//! and never decides who owns a unit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::{subject, Nats, NatsError};

/// The subjects of every unit's requests: `mlt.req.>`.
pub const REQUEST_SUBJECT_PREFIX: &str = "mlt.req.";

/// The queue group of a unit's owners: one member of the group gets each request.
pub const OWNERS_QUEUE: &str = "owners";

/// How long a request answered "no responders" is sent again before the sender is told
/// [`RequestError::NoResponders`]: a takeover by watchers takes a lease of silence (5 s by
/// default) plus recovery; a clean hand-over well under a second. Past this the client is told
/// to come back (503 `unit_moving` with Retry-After) rather than held.
pub const NO_RESPONDERS_RETRY_FOR_MS: u64 = 2_000;

/// The pause between two sends of a request answered "no responders".
pub const NO_RESPONDERS_PAUSE_MS: u64 = 50;

/// Requests a responder runs at once; more wait in the subscription's queue (the NATS
/// client's, bounded by its subscription capacity).
pub const MAX_REQUESTS_IN_FLIGHT: usize = 1_024;

/// How long a sender waits for the owner's receipt of a request before it sends it again
/// (lost between the servers, or held by a stalled owner: see [`Requester::forward`]).
pub const RECEIVED_WAIT_MS: u64 = 500;

/// The header of an owner's receipt of a request (an empty message on the reply subject,
/// sent before the request runs).
pub const RECEIVED_HEADER: &str = "Mlt-Received";

/// How long a stopping responder goes on answering before it unsubscribes: far longer than a
/// request spends on the wire between the servers, far shorter than a lease.
pub const STOP_GRACE_MS: u64 = 300;

const _: () = assert!(STOP_GRACE_MS < NO_RESPONDERS_RETRY_FOR_MS);
const _: () = assert!(RECEIVED_WAIT_MS * 2 <= NO_RESPONDERS_RETRY_FOR_MS);
const _: () = assert!(NO_RESPONDERS_PAUSE_MS * 10 <= NO_RESPONDERS_RETRY_FOR_MS);

/// The subject of unit `unit`'s requests: `sys.<slug>` is `mlt.req.sys.<slug>`, the slug
/// escaped as a log name's folder is ([`subject::of_log`]: `sol.2` is `sol_2e2`), so that a
/// slug is one token.
pub fn subject_of_unit(unit: &str) -> Result<String, NatsError> {
    let slug = unit
        .strip_prefix("sys.")
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| NatsError::Unit {
            unit: unit.to_string(),
            reason: "a unit's name is sys.<slug> (a system's slug, as in its log systems/<slug>)"
                .into(),
        })?;
    let token = subject::of_log(slug);
    let token = token
        .strip_prefix(subject::LOG_SUBJECT_PREFIX)
        .expect("of_log starts with its prefix");
    Ok(format!("{REQUEST_SUBJECT_PREFIX}sys.{token}"))
}

/// A boxed future, so that a handler can be a trait object.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a node does with a request: its payload in, the reply's payload out.
pub type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<Vec<u8>> + Send + Sync>;

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nobody serves the unit right now (a takeover or hand-over under way): the request was
    /// never delivered; sending it later is safe.
    #[error("unit {unit}: no node answers its requests (tried for {waited_ms} ms): a takeover or hand-over is under way; ask again in a moment")]
    NoResponders { unit: String, waited_ms: u64 },
    /// The request was sent and no answer came in time (the owner died or stalled
    /// mid-request): it may or may not have been done.
    #[error("unit {unit}: request {request_id} was sent and no answer came within {timeout_ms} ms: it may or may not have been done")]
    OutcomeUnknown {
        unit: String,
        request_id: String,
        timeout_ms: u64,
    },
    /// The request could not be sent (bad subject, too large, no connection): nothing was
    /// delivered.
    #[error("unit {unit}: the request could not be sent: {reason}")]
    Transport { unit: String, reason: String },
}

/// Sends requests to the owners of units.
#[derive(Clone)]
pub struct Requester {
    nats: Nats,
}

impl Requester {
    pub fn new(nats: &Nats) -> Requester {
        Requester { nats: nats.clone() }
    }

    /// Sends `payload` (request `request_id`) to the owner of `unit` and returns its reply's
    /// payload, waiting at most `timeout` for it once the owner said it received it.
    ///
    /// Every send of one call has the same reply subject, so an answer to any of them is
    /// read. A send the server answers "no responders" was delivered to nobody; a send that
    /// gets neither that nor the owner's receipt within [`RECEIVED_WAIT_MS`] was lost between
    /// the servers (an owner's unsubscription not yet known everywhere) or is held by a stalled
    /// owner: both are sent again for up to [`NO_RESPONDERS_RETRY_FOR_MS`] (the owner answers a
    /// request id it has seen with the first answer, `net::remote`). Once received, the request
    /// is never sent again: no answer within `timeout` is an unknown outcome.
    pub async fn forward(
        &self,
        unit: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RequestError> {
        assert!(!timeout.is_zero(), "a request waits for its answer a while");
        let transport = |reason: String| RequestError::Transport {
            unit: unit.to_string(),
            reason,
        };
        let unknown = || RequestError::OutcomeUnknown {
            unit: unit.to_string(),
            request_id: request_id.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let subject = subject_of_unit(unit).map_err(|e| transport(e.to_string()))?;
        let client = &self.nats.client;
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| transport(e.to_string()))?;
        let started = Instant::now();
        // Whether the last send got neither a receipt nor a refusal.
        let mut last_silent;
        loop {
            client
                .publish_with_reply(subject.clone(), inbox.clone(), payload.clone().into())
                .await
                .map_err(|e| transport(e.to_string()))?;
            // Sent from here on (the receipt's wait counts from the flush).
            if client.flush().await.is_err() {
                return Err(unknown());
            }
            match first_reply(&mut replies, Duration::from_millis(RECEIVED_WAIT_MS)).await {
                First::Answer(bytes) => return Ok(bytes),
                First::Received => {
                    return match answer(&mut replies, timeout).await {
                        Some(bytes) => Ok(bytes),
                        None => Err(unknown()),
                    }
                }
                First::Closed => return Err(unknown()),
                First::NoResponders => last_silent = false,
                First::Nothing => last_silent = true,
            }
            let waited_ms = started.elapsed().as_millis() as u64;
            if waited_ms < NO_RESPONDERS_RETRY_FOR_MS {
                tokio::time::sleep(Duration::from_millis(NO_RESPONDERS_PAUSE_MS)).await;
                continue;
            }
            // A last look for a late receipt of an earlier send. A silent send followed by
            // refusals was lost between the servers: an owner receipts every request it reads,
            // before anything else, even while it stops, and it unsubscribes only from the
            // same loop; so once the server refuses, an owner holding an unreceipted request
            // would be one stalled for this whole wait with its unsubscription sent.
            let no_responders = RequestError::NoResponders {
                unit: unit.to_string(),
                waited_ms,
            };
            return match first_reply(&mut replies, Duration::from_millis(RECEIVED_WAIT_MS)).await {
                First::Answer(bytes) => Ok(bytes),
                First::Received => answer(&mut replies, timeout).await.ok_or_else(unknown),
                First::NoResponders => Err(no_responders),
                First::Nothing if !last_silent => Err(no_responders),
                First::Nothing | First::Closed => Err(unknown()),
            };
        }
    }
}

/// The first thing heard on a request's reply subject.
enum First {
    /// The owner's answer (an owner of an older version sends no receipt).
    Answer(Vec<u8>),
    /// The owner's receipt: the answer follows.
    Received,
    /// The server's "no responders": delivered to nobody.
    NoResponders,
    /// Nothing within the wait.
    Nothing,
    /// The connection closed.
    Closed,
}

fn is_receipt(message: &async_nats::Message) -> bool {
    message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(RECEIVED_HEADER).is_some())
}

async fn first_reply(replies: &mut async_nats::Subscriber, wait: Duration) -> First {
    match tokio::time::timeout(wait, replies.next()).await {
        Err(_) => First::Nothing,
        Ok(None) => First::Closed,
        Ok(Some(m)) if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
            First::NoResponders
        }
        Ok(Some(m)) if is_receipt(&m) => First::Received,
        Ok(Some(m)) => First::Answer(m.payload.to_vec()),
    }
}

/// The answer after a receipt (skipping the receipts and refusals of the other sends).
async fn answer(replies: &mut async_nats::Subscriber, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = tokio::time::timeout_at(deadline, replies.next())
            .await
            .ok()??;
        if m.status.is_none() && !is_receipt(&m) {
            return Some(m.payload.to_vec());
        }
    }
}

/// This node answering a unit's requests. Dropping it (or [`Responder::stop`]) keeps answering
/// with the handler for [`STOP_GRACE_MS`] (the node's handler says "not here" once the unit is
/// gone), then unsubscribes: a request the server delivered before it processed the
/// unsubscription, still on the wire, is answered and not lost (async-nats's own `drain`
/// forgets the subscription without waiting for the server, and such a request was seen
/// unanswered: an outcome unknown for a request that never ran).
pub struct Responder {
    unit: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Responder {
    /// Subscribes `unit`'s subject in queue group [`OWNERS_QUEUE`] and answers each request
    /// with `handler`, on the caller's runtime (the node's: the handler runs the node's API).
    /// Returns once the subscription is known to this node's server (flushed).
    pub async fn start(nats: &Nats, unit: &str, handler: Handler) -> Result<Responder, NatsError> {
        let subject = subject_of_unit(unit)?;
        let client = nats.client.clone();
        let subscription = client
            .queue_subscribe(subject.clone(), OWNERS_QUEUE.to_string())
            .await
            .map_err(|e| NatsError::jetstream(format!("cannot subscribe {subject}"), e))?;
        client
            .flush()
            .await
            .map_err(|e| NatsError::jetstream(format!("cannot subscribe {subject}"), e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(answer_until_drained(
            client,
            unit.to_string(),
            subscription,
            handler,
            stopped,
        ));
        Ok(Responder {
            unit: unit.to_string(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The unit this responder answers for.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// Stops answering: returns once the server no longer delivers the unit's requests here
    /// and every request delivered before has been answered.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // The task drains by itself (see `stop`).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A responder's loop: each request to a task of its own (at most
/// [`MAX_REQUESTS_IN_FLIGHT`] at once); on `stopped`, [`STOP_GRACE_MS`] more of the same, then
/// unsubscribe and wait for every answer to be sent.
async fn answer_until_drained(
    client: async_nats::Client,
    unit: String,
    mut subscription: async_nats::Subscriber,
    handler: Handler,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    let mut stopping = false;
    let mut unsubscribed = false;
    let grace = tokio::time::sleep(Duration::from_secs(3_600 * 24 * 365));
    tokio::pin!(grace);
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            _ = &mut stopped, if !stopping => {
                stopping = true;
                grace.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(STOP_GRACE_MS));
                continue;
            }
            _ = &mut grace, if stopping && !unsubscribed => {
                // Unsubscribes, and waits until this node's server has processed it (a ping's
                // answer); the requests delivered before are still read below, to the end.
                unsubscribed = true;
                if let Err(e) = subscription.unsubscribe().await {
                    tracing::warn!(%unit, "cannot unsubscribe the unit's requests: {e}");
                }
                if let Err(e) = client.flush().await {
                    tracing::warn!(%unit, "cannot flush the unit's unsubscription: {e}");
                }
                continue;
            }
        };
        let Some(message) = message else {
            break;
        };
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(%unit, "a request without a reply subject: ignored");
            continue;
        };
        // The receipt, at once: from now on the sender never sends this request again.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(RECEIVED_HEADER, "1");
        if let Err(e) = client
            .publish_with_headers(reply_to.clone(), headers, Vec::new().into())
            .await
        {
            tracing::warn!(%unit, "cannot send a request's receipt: {e}");
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (client, handler, unit) = (client.clone(), handler.clone(), unit.clone());
        tokio::spawn(async move {
            // The request runs only once its receipt is on the wire: an owner killed with
            // the receipt still in its client's buffer never ran the request, and its sender,
            // told "no responders" afterwards, is right to say it was delivered to nobody.
            if let Err(e) = client.flush().await {
                tracing::warn!(%unit, "cannot flush a request's receipt: {e}; not run");
                drop(permit);
                return;
            }
            let answer = handler(message.payload.to_vec()).await;
            if let Err(e) = client.publish(reply_to, answer.into()).await {
                tracing::warn!(%unit, "cannot send a request's answer: {e}");
            }
            drop(permit);
        });
    }
    // Every answer under way is sent before a stop returns.
    let all = u32::try_from(MAX_REQUESTS_IN_FLIGHT).expect("a small limit");
    let _ = in_flight.acquire_many(all).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_subject_holds_its_slug_as_one_token() {
        assert_eq!(subject_of_unit("sys.sol").unwrap(), "mlt.req.sys.sol");
        assert_eq!(
            subject_of_unit("sys.alpha-centauri").unwrap(),
            "mlt.req.sys.alpha-centauri"
        );
        assert_eq!(subject_of_unit("sys.sol.2").unwrap(), "mlt.req.sys.sol_2e2");
        for bad in ["sol", "sys.", "mesh", "sys.a/b"] {
            let e = subject_of_unit(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("sys.<slug>"), "{e}");
        }
    }
}
