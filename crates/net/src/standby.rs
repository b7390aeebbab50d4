//! The API of a node that stands by, and its switch to serving.
//!
//! A node of a JetStream galaxy that does not hold the galaxy's lease listens on its API
//! address at once and answers every request with 503, `Retry-After: 1` and the error code
//! `standby`, whose message names the node holding the lease: a client holding several server
//! URLs tries the next one (docs/API.md, docs/NATS.md). Once the node has taken over (claimed
//! the lease, recovered, fenced every log), [`Switch::serve`] hands every later request, on
//! connections already open too, to the real API.
//!
//! This module never touches the mesh and never serves a request of the game before the
//! switch: until then, the only answer is 503.

use std::sync::{Arc, OnceLock, RwLock};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_service::Service;

use crate::error::ApiError;

/// The error code of a standby's answers ([`api::CODES`]).
pub const STANDBY_CODE: &str = "standby";

/// Seconds a client waits before asking this node again (the `Retry-After` header).
pub const STANDBY_RETRY_AFTER_S: u64 = 1;

/// What the API answers: 503 `standby` until [`Switch::serve`], then the real router.
pub struct Switch {
    /// Who holds the lease, as the standby's answers name it (`node=alpha epoch=5`).
    holder: RwLock<String>,
    /// The API once this node serves; set once.
    active: OnceLock<Router>,
}

impl Switch {
    /// A switch that stands by, naming `holder` as the node that serves.
    pub fn standing_by(holder: impl Into<String>) -> Arc<Switch> {
        Arc::new(Switch {
            holder: RwLock::new(holder.into()),
            active: OnceLock::new(),
        })
    }

    /// A new holder to name (the lease changed hands while this node stands by).
    pub fn set_holder(&self, holder: impl Into<String>) {
        *self.holder.write().unwrap_or_else(|e| e.into_inner()) = holder.into();
    }

    /// From now on every request goes to `router`. Called once, when this node serves.
    pub fn serve(&self, router: Router) {
        let set = self.active.set(router);
        assert!(set.is_ok(), "a node switches to serving once");
    }

    /// Whether this node serves (else it stands by).
    pub fn is_serving(&self) -> bool {
        self.active.get().is_some()
    }

    /// The router to serve with [`crate::server::serve`]: every request, whatever its path,
    /// goes through the switch.
    pub fn router(self: &Arc<Switch>) -> Router {
        Router::new().fallback(route).with_state(self.clone())
    }

    fn standby_answer(&self) -> Response {
        let holder = self.holder.read().unwrap_or_else(|e| e.into_inner());
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            STANDBY_CODE,
            format!(
                "this node stands by: the galaxy is served by {holder}; try another server URL, or ask again: this node takes over if that one's lease expires"
            ),
        )
        .retry_after_s(STANDBY_RETRY_AFTER_S)
        .into_response()
    }
}

async fn route(State(switch): State<Arc<Switch>>, req: Request) -> Response {
    match switch.active.get() {
        // A router is always ready (`poll_ready` is a no-op), so calling a clone is right.
        Some(router) => match router.clone().call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => switch.standby_answer(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;

    async fn send(router: &Router, path: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let res = router.clone().call(req).await.unwrap();
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_standby_answers_503_naming_the_holder_then_serves_after_the_switch() {
        let switch = Switch::standing_by("node=alpha epoch=5");
        let router = switch.router();
        for path in ["/v1/status", "/v1/map", "/anything"] {
            let (status, retry, body) = send(&router, path).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(retry.as_deref(), Some("1"));
            let body: api::ErrorBody = serde_json::from_str(&body).unwrap();
            assert_eq!(body.error.code, STANDBY_CODE);
            assert!(
                body.error.message.contains("node=alpha epoch=5"),
                "{body:?}"
            );
        }
        switch.set_holder("node=gamma epoch=9");
        let (_, _, body) = send(&router, "/v1/status").await;
        assert!(body.contains("node=gamma epoch=9"), "{body}");
        assert!(!switch.is_serving());

        switch.serve(Router::new().route("/v1/status", get(|| async { "ok" })));
        assert!(switch.is_serving());
        let (status, _, body) = send(&router, "/v1/status").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let (status, _, _) = send(&router, "/v1/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the real router answers");
    }
}
