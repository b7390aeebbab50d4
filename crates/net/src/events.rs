//! The event stream (`GET /v1/events`, server-sent events of [`api::StreamEvent`]): what a
//! player may see.
//!
//! Two sources, merged per stream. The mesh's event feed ([`mesh::feed`]) tells of the
//! others in the player's system: players arriving (`arrived`) and leaving (`left`), and joins
//! when the player is at the home system (`joined`). The API layer itself tells the player of
//! their own actions, with what only it knows: their jumps (`departed` with the travel time,
//! `progress` with the time left, `landed` with the population), refuels (with the tank and
//! purse after), trades (`traded`), loot (`looted`) and refused actions (`error`). Fights are
//! public in a system: the feed tells everyone there of a ship destroyed (`destroyed`, the
//! player's own included), and a player of an order to fire at them (`attacked`). The feed's
//! other events about the player themselves only tell the stream where they are now. Not
//! streamed: others' refuels, trades and loot (their own business; see docs/API.md).
//!
//! Owns the per-player channels and the stream limits; never blocks a request or a shard on a
//! slow subscriber (the channels and the feed are bounded broadcasts: a subscriber that lags is
//! told how many events it missed and goes on) and never sends a player's private event to
//! anyone else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;

use super::error::ApiError;
use super::shutdown::Stopping;
use api::StreamEvent;
use mesh::directory::SystemPlace;
use mesh::feed::{FeedEvent, FeedEventKind};
use mesh::Mesh;
use sim::galaxy::SystemId;

/// Events a player's subscribers may fall behind by before they miss some (the mesh's feed
/// holds [`mesh::feed::FEED_LEN`]).
pub const PLAYER_CHANNEL_LEN: usize = 256;
/// Streams one player may hold open at once.
pub const MAX_STREAMS_PER_PLAYER: usize = 4;
/// Streams the server holds open at once.
pub const MAX_STREAMS: usize = 4096;
/// A comment line this often keeps idle connections (and proxies) alive.
pub const KEEP_ALIVE_S: u64 = 15;

/// One event as a server-sent event: its `type` is the SSE event name, the JSON the `data`.
fn to_sse(event: &StreamEvent) -> SseEvent {
    let sse = SseEvent::default().event(event.name());
    match sse.clone().json_data(event) {
        Ok(e) => e,
        // Serializing plain strings and numbers does not fail; say so if it ever did.
        Err(_) => sse.data("{}"),
    }
}

/// The per-player channels, and the mesh whose feed every stream listens to.
pub struct Hub {
    mesh: Mesh,
    /// std mutex: held for a map operation only, never across an await.
    private: Mutex<HashMap<String, broadcast::Sender<Arc<StreamEvent>>>>,
    streams: AtomicUsize,
    /// Streams end when the server stops (or a graceful shutdown would wait for them forever).
    stopping: Arc<Stopping>,
}

impl Hub {
    pub fn new(mesh: Mesh, stopping: Arc<Stopping>) -> Hub {
        Hub {
            mesh,
            private: Mutex::new(HashMap::new()),
            streams: AtomicUsize::new(0),
            stopping,
        }
    }

    /// An event for `player` alone (dropped if they have no open stream).
    pub fn tell(&self, player: &str, event: StreamEvent) {
        let map = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(player) {
            let _ = tx.send(Arc::new(event));
        }
    }

    /// Whether `player` has a stream open (so that nobody computes events nobody reads).
    pub fn is_watched(&self, player: &str) -> bool {
        self.private
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(player)
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Opens a stream for `player`, starting with `hello` (where they are).
    pub fn subscribe(
        self: &Arc<Hub>,
        player: &str,
    ) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
        let too_many =
            |m: &str| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", m);
        let private_rx = {
            let mut map = self.private.lock().unwrap_or_else(|e| e.into_inner());
            let tx = map
                .entry(player.to_string())
                .or_insert_with(|| broadcast::channel(PLAYER_CHANNEL_LEN).0);
            if tx.receiver_count() >= MAX_STREAMS_PER_PLAYER {
                return Err(too_many(&format!(
                    "you have {MAX_STREAMS_PER_PLAYER} event streams open already; close one"
                ))
                .retry_after_s(KEEP_ALIVE_S));
            }
            if self.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
                self.streams.fetch_sub(1, Ordering::Relaxed);
                if tx.receiver_count() == 0 {
                    map.remove(player);
                }
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_streams",
                    "the server has too many event streams open; try again later",
                )
                .retry_after_s(KEEP_ALIVE_S));
            }
            tx.subscribe()
        };
        // Listen first, then locate: a move missed by the one is seen by the other.
        let feed = self.mesh.events();
        let here = self.here(player);
        let hello = StreamEvent::Hello {
            player: player.to_string(),
            system: here.map(|s| self.mesh.galaxy().name(s).to_string()),
        };
        let sub = Subscription {
            hub: self.clone(),
            player: player.to_string(),
            private_rx: Some(private_rx),
            feed,
            here,
            hello: Some(hello),
            stop: Box::pin(self.stopping.wait()),
        };
        let stream = futures_util::stream::unfold(sub, |mut sub| async move {
            let event = sub.next().await?;
            Some((Ok(to_sse(&event)), sub))
        });
        Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_S))))
    }
}

impl Hub {
    /// The system `player` is in, as routing knows it (None in a jump).
    fn here(&self, player: &str) -> Option<SystemId> {
        match self.mesh.locate(player) {
            Some(SystemPlace::In(s)) => Some(s),
            _ => None,
        }
    }

    /// Where `player` is after `e`, an event about them: as routing knows it, or, when routing
    /// does not know them (another node of a spread galaxy holds them, and its events reach
    /// this node's feed through `mesh::spread_news`), as the event says.
    fn here_after(&self, player: &str, e: &FeedEvent) -> Option<SystemId> {
        match self.mesh.locate(player) {
            Some(SystemPlace::In(s)) => Some(s),
            Some(SystemPlace::Jumping { .. }) => None,
            None => seen_at(e),
        }
    }
}

/// Where the player an event is about is once it happened: in a jump after a departure, in
/// the event's system after anything else (a join, a landing, a move, a cancelled jump, an
/// action there).
fn seen_at(e: &FeedEvent) -> Option<SystemId> {
    match e.kind {
        FeedEventKind::Departed { .. } => None,
        _ => Some(e.system),
    }
}

/// One open stream. Dropping it (the client went away) closes the player's channel if it was
/// their last stream.
struct Subscription {
    hub: Arc<Hub>,
    player: String,
    private_rx: Option<broadcast::Receiver<Arc<StreamEvent>>>,
    feed: broadcast::Receiver<Arc<FeedEvent>>,
    /// Where the player is (None in a jump): asked of routing when the stream opens, and again
    /// at each event of the feed about the player (the only events that move them) and after
    /// missing events. Routing is told of a move before the feed publishes it.
    here: Option<SystemId>,
    hello: Option<StreamEvent>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// What a stream woke up for.
enum Woke {
    Private(Result<Arc<StreamEvent>, broadcast::error::RecvError>),
    Feed(Result<Arc<FeedEvent>, broadcast::error::RecvError>),
    Stop,
}

impl Subscription {
    /// The next event, or `None` when the server stops.
    async fn next(&mut self) -> Option<Arc<StreamEvent>> {
        if let Some(h) = self.hello.take() {
            return Some(Arc::new(h));
        }
        loop {
            let private = self.private_rx.as_mut()?;
            let woke = tokio::select! {
                r = private.recv() => Woke::Private(r),
                r = self.feed.recv() => Woke::Feed(r),
                () = &mut self.stop => Woke::Stop,
            };
            match woke {
                Woke::Private(Ok(e)) => return Some(e),
                Woke::Feed(Ok(e)) => {
                    if let Some(seen) = self.see(&e) {
                        return Some(Arc::new(seen));
                    }
                }
                Woke::Private(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    return Some(Arc::new(StreamEvent::Lagged { missed }))
                }
                Woke::Feed(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    // The missed events may have moved the player.
                    self.here = self.hub.here(&self.player);
                    return Some(Arc::new(StreamEvent::Lagged { missed }));
                }
                Woke::Private(Err(broadcast::error::RecvError::Closed))
                | Woke::Feed(Err(broadcast::error::RecvError::Closed))
                | Woke::Stop => return None,
            }
        }
    }

    /// What the player sees of an event of the feed: those of others in the player's system,
    /// and the destruction of their own ship. A string and a number compared for most events;
    /// routing asked for the player's own.
    fn see(&mut self, e: &FeedEvent) -> Option<StreamEvent> {
        let name = |s: SystemId| self.hub.mesh.galaxy().name(s).to_string();
        let destroyed = |kind: &FeedEventKind| match kind {
            FeedEventKind::Destroyed { player, by, wreck } => Some(StreamEvent::Destroyed {
                player: player.clone(),
                by: by.clone(),
                wreck: *wreck,
                system: name(e.system),
            }),
            _ => None,
        };
        if e.kind.about() == Some(self.player.as_str()) {
            // The API layer tells the player of their own actions; this says where they are.
            // Only the loss of their ship is not an action of theirs.
            self.here = self.hub.here_after(&self.player, e);
            // Moves between instances are no action of theirs: the mesh tells of them.
            if let FeedEventKind::Moved {
                instance, notice, ..
            } = &e.kind
            {
                return Some(StreamEvent::Instanced {
                    system: self.hub.mesh.galaxy().name(e.system).to_string(),
                    instance: *instance,
                    message: notice.clone(),
                });
            }
            return destroyed(&e.kind);
        }
        if self.here != Some(e.system) {
            return None;
        }
        match &e.kind {
            FeedEventKind::Joined { player } => Some(StreamEvent::Joined {
                player: player.clone(),
                system: name(e.system),
            }),
            FeedEventKind::Arrived {
                player,
                from,
                xfer,
                population,
            } => Some(StreamEvent::Arrived {
                player: player.clone(),
                xfer: xfer.clone(),
                from: name(*from),
                system: name(e.system),
                population: *population,
            }),
            FeedEventKind::Departed { player, to, xfer } => Some(StreamEvent::Left {
                player: player.clone(),
                xfer: xfer.clone(),
                system: name(e.system),
                to: name(*to),
            }),
            // Fights are public in the system: who shot whom down, and who takes aim at you.
            FeedEventKind::Destroyed { .. } => destroyed(&e.kind),
            FeedEventKind::Engaged {
                player,
                target: Some(target),
            } if *target == self.player => Some(StreamEvent::Attacked {
                by: player.clone(),
                system: name(e.system),
            }),
            // Others' purchases and loot are their own business. Only recovery cancels jumps,
            // and it publishes nothing (nobody is connected then).
            // A market shock is news for everyone in the system.
            FeedEventKind::Shock {
                kind,
                good,
                until,
                notice,
            } => Some(StreamEvent::Shock {
                system: name(e.system),
                kind: kind.clone(),
                good: good.clone(),
                until: *until,
                message: notice.clone(),
            }),
            FeedEventKind::Refueled { .. }
            | FeedEventKind::Repaired { .. }
            | FeedEventKind::Cancelled { .. }
            | FeedEventKind::Traded { .. }
            | FeedEventKind::Engaged { .. }
            | FeedEventKind::Looted { .. }
            | FeedEventKind::Moved { .. } => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.private_rx.take());
        self.hub.streams.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.hub.private.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.player)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.player);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::ids::Tick;
    use store::seq::Seq;

    fn event(system: u16, kind: FeedEventKind) -> FeedEvent {
        FeedEvent {
            system: SystemId(system),
            instance: 1,
            seq: Seq(1),
            t: Tick(1),
            kind,
        }
    }

    /// A stream on a node that does not hold its player follows them by their own events.
    #[test]
    fn a_player_held_elsewhere_is_placed_by_their_own_events() {
        let player = || "ann".to_string();
        let arrived = FeedEventKind::Arrived {
            player: player(),
            from: SystemId(0),
            xfer: "sol:1".into(),
            population: 1,
        };
        assert_eq!(seen_at(&event(2, arrived)), Some(SystemId(2)));
        let joined = FeedEventKind::Joined { player: player() };
        assert_eq!(seen_at(&event(0, joined)), Some(SystemId(0)));
        let departed = FeedEventKind::Departed {
            player: player(),
            to: SystemId(2),
            xfer: "sol:1".into(),
        };
        assert_eq!(seen_at(&event(0, departed)), None, "in a jump");
        let cancelled = FeedEventKind::Cancelled {
            player: player(),
            xfer: "sol:1".into(),
        };
        assert_eq!(seen_at(&event(0, cancelled)), Some(SystemId(0)), "back");
    }
}
