//! The event stream (`GET /v1/events`, server-sent events): what a player may see, as the API
//! layer itself observes it, because the mesh does not publish events yet.
//!
//! Streamed now: joins of any player (public: names are public), and the player's own jumps
//! (`departed`, `progress` with the time left, `landed` with the population), refuels and
//! refused actions (`error`). Not streamed yet: other players arriving in or leaving the
//! player's system, and anything done through another API instance (see docs/API.md).
//!
//! Owns the channels and the stream limits; never blocks a request on a slow subscriber (the
//! channels are bounded broadcasts: a subscriber that lags is told how many events it missed)
//! and never sends a player's private event to anyone else.

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
use serde::Serialize;
use tokio::sync::broadcast;

use super::error::ApiError;
use super::shutdown::Stopping;

/// Events a player's subscribers may fall behind by before they miss some.
pub const PLAYER_CHANNEL_LEN: usize = 256;
/// Public events a subscriber may fall behind by before it misses some.
pub const PUBLIC_CHANNEL_LEN: usize = 1024;
/// Streams one player may hold open at once.
pub const MAX_STREAMS_PER_PLAYER: usize = 4;
/// Streams the server holds open at once.
pub const MAX_STREAMS: usize = 4096;
/// A comment line this often keeps idle connections (and proxies) alive.
pub const KEEP_ALIVE_S: u64 = 15;

/// One event. Serialized as the SSE `data` (JSON); its `type` is also the SSE event name.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// First event of every stream: where the player is now.
    Hello {
        player: String,
        /// Null while in a jump.
        system: Option<String>,
    },
    /// A new player appeared at the home system.
    Joined { player: String, system: String },
    /// The player's jump is committed.
    Departed {
        xfer: String,
        from: String,
        to: String,
        travel_ms: u64,
    },
    /// The player is in a jump; `remaining_ms` until the landing is due.
    Progress {
        xfer: String,
        to: String,
        remaining_ms: u64,
    },
    /// The player landed; `population` counts them too.
    Landed {
        xfer: String,
        system: String,
        population: usize,
    },
    /// The player bought fuel.
    Refueled {
        bought_units: u32,
        cost_cr: u64,
        fuel: u32,
        credits: u64,
    },
    /// An action of the player was refused.
    Error {
        route: String,
        code: String,
        message: String,
    },
    /// This stream fell behind and missed `missed` events.
    Lagged { missed: u64 },
}

impl ApiEvent {
    fn name(&self) -> &'static str {
        match self {
            ApiEvent::Hello { .. } => "hello",
            ApiEvent::Joined { .. } => "joined",
            ApiEvent::Departed { .. } => "departed",
            ApiEvent::Progress { .. } => "progress",
            ApiEvent::Landed { .. } => "landed",
            ApiEvent::Refueled { .. } => "refueled",
            ApiEvent::Error { .. } => "error",
            ApiEvent::Lagged { .. } => "lagged",
        }
    }

    fn to_sse(&self) -> SseEvent {
        let event = SseEvent::default().event(self.name());
        match event.clone().json_data(self) {
            Ok(e) => e,
            // Serializing plain strings and numbers does not fail; say so if it ever did.
            Err(_) => event.data("{}"),
        }
    }
}

/// The channels: one public, and one per player with an open stream.
pub struct Hub {
    public: broadcast::Sender<Arc<ApiEvent>>,
    /// std mutex: held for a map operation only, never across an await.
    private: Mutex<HashMap<String, broadcast::Sender<Arc<ApiEvent>>>>,
    streams: AtomicUsize,
    /// Streams end when the server stops (or a graceful shutdown would wait for them forever).
    stopping: Arc<Stopping>,
}

impl Hub {
    pub fn new(stopping: Arc<Stopping>) -> Hub {
        Hub {
            public: broadcast::channel(PUBLIC_CHANNEL_LEN).0,
            private: Mutex::new(HashMap::new()),
            streams: AtomicUsize::new(0),
            stopping,
        }
    }

    /// An event for everyone.
    pub fn publish(&self, event: ApiEvent) {
        // No subscriber: nobody to tell.
        let _ = self.public.send(Arc::new(event));
    }

    /// An event for `player` alone (dropped if they have no open stream).
    pub fn tell(&self, player: &str, event: ApiEvent) {
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

    /// Opens a stream for `player`, starting with `hello`.
    pub fn subscribe(
        self: &Arc<Hub>,
        player: &str,
        hello: ApiEvent,
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
        let sub = Subscription {
            hub: self.clone(),
            player: player.to_string(),
            private_rx: Some(private_rx),
            public_rx: self.public.subscribe(),
            hello: Some(hello),
            stop: Box::pin(self.stopping.wait()),
        };
        let stream = futures_util::stream::unfold(sub, |mut sub| async move {
            let event = sub.next().await?;
            Some((Ok(event.to_sse()), sub))
        });
        Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_S))))
    }
}

/// One open stream. Dropping it (the client went away) closes the player's channel if it was
/// their last stream.
struct Subscription {
    hub: Arc<Hub>,
    player: String,
    private_rx: Option<broadcast::Receiver<Arc<ApiEvent>>>,
    public_rx: broadcast::Receiver<Arc<ApiEvent>>,
    hello: Option<ApiEvent>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Subscription {
    /// The next event, or `None` when the server stops.
    async fn next(&mut self) -> Option<Arc<ApiEvent>> {
        if let Some(h) = self.hello.take() {
            return Some(Arc::new(h));
        }
        let private = self.private_rx.as_mut()?;
        let received = tokio::select! {
            r = private.recv() => r,
            r = self.public_rx.recv() => r,
            () = &mut self.stop => return None,
        };
        match received {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(Arc::new(ApiEvent::Lagged { missed }))
            }
            Err(broadcast::error::RecvError::Closed) => None,
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
