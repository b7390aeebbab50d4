//! The bots' [`GameApi`] over HTTP: one shared connection pool for all bots, each call with its
//! bot's token.
//!
//! Not the player client's `Api` (`cli/client/api.rs`): that one holds one saved token and turns
//! errors into messages for people, while bots need a token per call, the HTTP status and
//! `Retry-After` as numbers. The timeouts are the client's, and so is the following of the
//! serving node ([`client::follow::Servers`]): with several URLs, a request that a node could
//! not take (refused, standing by, shutting down) goes to the next one.
//!
//! Requests are the `api` crate's types, and so is the error body; answers are read into the
//! bots' own partial views ([`super::api`]).
//!
//! Never sends an action twice: one whose answer was lost is an error of code
//! [`OUTCOME_UNKNOWN`], after which the bot re-reads its status. The bot decides what a failure
//! means.

use std::time::Duration;

use ::api::{
    AttackRequest, ErrorBody, JoinRequest, RefuelRequest, RepairRequest, TradeRequest, TradeSide,
    TravelRequest,
};
use client::follow::{parse_urls, Answer, FollowCounts, Kind, SendError, Servers};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{
    Attacked, Call, CallError, GameApi, Joined, Landed, Market, Me, Refueled, Repaired, Scan, Side,
    SystemView, Traded, Traveled,
};
use client::api::{CONNECT_TIMEOUT_S, LANDING_TIMEOUT_S, REQUEST_TIMEOUT_S};

/// Connections kept open per host: one per bot at most is plenty.
const MAX_IDLE_CONNECTIONS: usize = 4096;
/// The error code of an action whose answer was lost (done or not: the bot looks).
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

/// The galaxy at one URL, or at several (its nodes, one of which serves).
pub struct HttpApi {
    servers: Servers,
}

impl HttpApi {
    /// A pool of connections to `list`: `http://host:port`, or several separated by commas.
    pub fn new(list: &str) -> anyhow::Result<HttpApi> {
        let urls = parse_urls(list).map_err(anyhow::Error::msg)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .tcp_nodelay(true)
            .build()?;
        Ok(HttpApi {
            servers: Servers::new(http, urls),
        })
    }

    /// The URL of the node last seen serving.
    pub fn base(&self) -> &str {
        self.servers.active()
    }

    /// What following the serving node cost so far.
    pub fn follow_counts(&self) -> FollowCounts {
        self.servers.counts()
    }

    fn http(&self) -> &reqwest::Client {
        self.servers.http()
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, token: &str, timeout_s: u64) -> Call<T> {
        self.send(Kind::Read, timeout_s, |base| {
            self.http().get(format!("{base}{path}")).bearer_auth(token)
        })
        .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &impl Serialize,
    ) -> Call<T> {
        self.send(Kind::Write, REQUEST_TIMEOUT_S, |base| {
            self.http()
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(body)
        })
        .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        kind: Kind,
        timeout_s: u64,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Call<T> {
        let answer = self
            .servers
            .send(kind, Duration::from_secs(timeout_s), build)
            .await
            .map_err(|e| match e {
                SendError::NoneServing { ref tried, .. } => CallError::Unreachable {
                    code: if tried.iter().all(|(_, why)| why.contains("in time")) {
                        "timeout"
                    } else {
                        "unreachable"
                    }
                    .to_string(),
                    message: e.to_string(),
                },
                SendError::OutcomeUnknown { .. } => CallError::Unreachable {
                    code: OUTCOME_UNKNOWN.to_string(),
                    message: e.to_string(),
                },
            })?;
        decode(answer)
    }
}

/// An answer read into the wanted view, or the [`CallError`] it says.
fn decode<T: DeserializeOwned>(answer: Answer) -> Call<T> {
    let Answer {
        url,
        status,
        retry_after,
        body,
    } = answer;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| CallError::Unreachable {
            code: "bad_answer".into(),
            message: format!("{url} answered something else than the API: {e}"),
        });
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => (error.code, error.message),
        Err(_) => ("http_error".to_string(), format!("HTTP {status}")),
    };
    if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
        Err(CallError::Refused {
            status: status.as_u16(),
            code,
            message,
            retry_after_s: retry_after.and_then(|v| v.trim().parse().ok()),
        })
    } else {
        Err(CallError::Unreachable { code, message })
    }
}

impl GameApi for HttpApi {
    async fn systems(&self) -> Call<Vec<SystemView>> {
        self.send(Kind::Read, REQUEST_TIMEOUT_S, |base| {
            self.http().get(format!("{base}/v1/systems"))
        })
        .await
    }

    async fn join(&self, name: &str) -> Call<Joined> {
        let body = JoinRequest {
            name: name.to_string(),
        };
        self.send(Kind::Write, REQUEST_TIMEOUT_S, |base| {
            self.http().post(format!("{base}/v1/join")).json(&body)
        })
        .await
    }

    async fn me(&self, token: &str) -> Call<Me> {
        self.get("/v1/me", token, REQUEST_TIMEOUT_S).await
    }

    async fn market(&self, token: &str) -> Call<Market> {
        self.get("/v1/market", token, REQUEST_TIMEOUT_S).await
    }

    async fn trade(&self, token: &str, side: Side, good: &str, qty: u32) -> Call<Traded> {
        let body = TradeRequest {
            side: match side {
                Side::Buy => TradeSide::Buy,
                Side::Sell => TradeSide::Sell,
            },
            good: good.to_string(),
            qty: u64::from(qty),
            limit_cr: None,
        };
        self.post("/v1/trade", token, &body).await
    }

    async fn refuel(&self, token: &str, units: Option<u32>) -> Call<Refueled> {
        let body = RefuelRequest { units };
        self.post("/v1/refuel", token, &body).await
    }

    async fn repair(&self, token: &str) -> Call<Repaired> {
        let body = RepairRequest { points: None };
        self.post("/v1/repair", token, &body).await
    }

    async fn travel(&self, token: &str, to: &str) -> Call<Traveled> {
        let body = TravelRequest {
            to: to.to_string(),
            from: None,
            wait: false,
        };
        self.post("/v1/travel", token, &body).await
    }

    async fn landing(&self, token: &str) -> Call<Landed> {
        loop {
            match self.get("/v1/landing", token, LANDING_TIMEOUT_S).await {
                // The server waits at most a minute, then asks to ask again.
                Err(CallError::Refused { code, .. }) if code == "in_jump" => continue,
                other => return other,
            }
        }
    }

    async fn scan(&self, token: &str) -> Call<Scan> {
        self.get("/v1/scan", token, REQUEST_TIMEOUT_S).await
    }

    async fn attack(&self, token: &str, target: &str) -> Call<Attacked> {
        let body = AttackRequest {
            target: Some(Some(target.to_string())),
        };
        self.post("/v1/attack", token, &body).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode as Status;
    use axum::response::IntoResponse;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A fake node: every request answers `status` and `body`; counts requests.
    async fn node(status: u16, body: &'static str) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { (Status::from_u16(status).unwrap(), body).into_response() }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    /// A node that takes each request and dies before answering.
    async fn dies_after_request() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn bots_follow_the_serving_node_and_never_join_twice() {
        let (standby, _) = node(
            503,
            r#"{"error":{"code":"standby","message":"standing by"}}"#,
        )
        .await;
        let (active, active_hits) = node(200, r#"[{"name":"Sol","lanes":[]}]"#).await;
        let api = HttpApi::new(&format!("{standby},{active}")).unwrap();
        let systems = api.systems().await.expect("the map from the serving node");
        assert_eq!(systems[0].name, "Sol");
        assert_eq!(api.base(), active);

        let dying = dies_after_request().await;
        let api = HttpApi::new(&format!("{dying},{active}")).unwrap();
        let before = active_hits.load(Ordering::SeqCst);
        let e = api.join("bot-1-0").await.expect_err("the answer was lost");
        assert_eq!(e.code(), OUTCOME_UNKNOWN, "{e}");
        assert_eq!(
            active_hits.load(Ordering::SeqCst),
            before,
            "the join was not sent again elsewhere"
        );
        assert_eq!(api.follow_counts().outcome_unknown, 1);
    }
}
