//! Where a player is, asked of every node at once (issue 19, decision 9): a scatter request on
//! [`WHEREIS_SUBJECT`] whose payload is the player's name. Every node subscribes (no queue
//! group: each one hears every question) and answers only for the players it holds, through a
//! closure the node gives ([`Answerer::start`]): in one of its units, or arriving at one (a jump
//! towards it committed, not landed). [`ask`] sends the question once and collects answers for
//! a short window, or until a node says "in", and prefers "in" over "arriving".
//!
//! An answer names a unit, not a node: the unit's requests go to whichever node owns it then
//! (`requests`), so an answer stays useful across a hand-over. This module never caches an
//! answer (the caller does, and asks again when the owner says "not here") and never decides
//! where a player is: the nodes' closures do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{Nats, NatsError};

/// The subject every node answers on.
pub const WHEREIS_SUBJECT: &str = "mlt.whereis";

/// The longest player name asked about, in bytes (a name is at most a few dozen characters;
/// anything longer is not a player of this galaxy and is not sent).
pub const MAX_NAME_BYTES: usize = 256;

/// The most answers one question reads before it stops (a galaxy's nodes; more answers for
/// one player than this would be a bug elsewhere).
pub const MAX_ANSWERS: usize = 64;

/// The window [`ask`] waits by default: a node answers from memory, so a round trip on
/// loopback or a LAN is a few milliseconds.
pub const DEFAULT_WINDOW_MS: u64 = 250;

/// Where a node holds a player.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Whereabouts {
    /// In a system (or one of its instances) of the unit.
    In,
    /// In a jump towards the unit, not landed yet.
    Arriving,
}

/// One node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// The unit (`sys.<slug>`).
    pub unit: String,
    pub at: Whereabouts,
    /// The node that answered (for messages and logs only; requests go to the unit).
    pub node: String,
}

/// How a node finds a player among its own units: the unit and where, or None (not here).
pub type Lookup = Arc<dyn Fn(&str) -> Option<(String, Whereabouts)> + Send + Sync>;

/// This node answering the question for the players it holds; dropping it unsubscribes.
pub struct Answerer {
    task: tokio::task::JoinHandle<()>,
}

impl Answerer {
    /// Subscribes [`WHEREIS_SUBJECT`] and answers each question with `lookup` (called with the
    /// player's name; a node that does not hold the player says nothing). Runs on the caller's
    /// runtime; returns once the subscription is known to this node's server.
    pub async fn start(nats: &Nats, lookup: Lookup) -> Result<Answerer, NatsError> {
        let client = nats.client.clone();
        let what = || format!("cannot subscribe {WHEREIS_SUBJECT}");
        let mut subscription = client
            .subscribe(WHEREIS_SUBJECT)
            .await
            .map_err(|e| NatsError::jetstream(what(), e))?;
        client
            .flush()
            .await
            .map_err(|e| NatsError::jetstream(what(), e))?;
        let node = nats.node.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Some(reply_to) = message.reply else {
                    continue;
                };
                let Ok(name) = std::str::from_utf8(&message.payload) else {
                    continue;
                };
                let Some((unit, at)) = lookup(name) else {
                    continue;
                };
                let seen = Seen {
                    unit,
                    at,
                    node: node.clone(),
                };
                let body = serde_json::to_vec(&seen).expect("an answer serializes");
                if let Err(e) = client.publish(reply_to, body.into()).await {
                    tracing::warn!("cannot answer where {name} is: {e}");
                }
            }
        });
        Ok(Answerer { task })
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one question heard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// The best answer: the first "in", else the first "arriving"; None: nobody holds the
    /// player (or no answer came within the window).
    pub best: Option<Seen>,
    /// Every answer read, in order of arrival (for logs and tests: two "in" for one player
    /// would be a duplicated player).
    pub answers: Vec<Seen>,
    /// Answers that could not be read (a node of another version): counted, never used.
    pub unreadable: usize,
}

/// Asks every node where `name` is: sends the question once and reads answers for `window`,
/// or until one says "in".
pub async fn ask(nats: &Nats, name: &str, window: Duration) -> Result<Heard, NatsError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Ok(Heard::default());
    }
    let client = nats.client.clone();
    let inbox = client.new_inbox();
    let what = || format!("cannot ask where {name} is on {WHEREIS_SUBJECT}");
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| NatsError::jetstream(what(), e))?;
    client
        .publish_with_reply(WHEREIS_SUBJECT, inbox, name.as_bytes().to_vec().into())
        .await
        .map_err(|e| NatsError::jetstream(what(), e))?;
    client
        .flush()
        .await
        .map_err(|e| NatsError::jetstream(what(), e))?;
    let deadline = Instant::now() + window;
    let mut heard = Heard::default();
    while heard.answers.len() + heard.unreadable < MAX_ANSWERS {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(message)) = tokio::time::timeout(left, answers.next()).await else {
            break;
        };
        match serde_json::from_slice::<Seen>(&message.payload) {
            Ok(seen) => {
                let is_in = seen.at == Whereabouts::In;
                heard.answers.push(seen);
                if is_in {
                    break;
                }
            }
            Err(_) => heard.unreadable += 1,
        }
    }
    heard.best = heard
        .answers
        .iter()
        .find(|s| s.at == Whereabouts::In)
        .or_else(|| heard.answers.first())
        .cloned();
    Ok(heard)
}
