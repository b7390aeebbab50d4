//! The bots' [`GameApi`] over HTTP: one shared connection pool for all bots, each call with its
//! bot's token.
//!
//! Not the player client's `Api` (`cli/client/api.rs`): that one holds one saved token and turns
//! errors into messages for people, while bots need a token per call, the HTTP status and
//! `Retry-After` as numbers. The timeouts are the client's.
//!
//! Requests are the `api` crate's types, and so is the error body; answers are read into the
//! bots' own partial views ([`super::api`]).
//!
//! Never retries: the bot decides what a failure means.

use std::time::Duration;

use ::api::{
    AttackRequest, ErrorBody, JoinRequest, RefuelRequest, TradeRequest, TradeSide, TravelRequest,
};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{
    Attacked, Call, CallError, GameApi, Joined, Landed, Market, Me, Refueled, Scan, Side,
    SystemView, Traded, Traveled,
};
use client::api::{CONNECT_TIMEOUT_S, LANDING_TIMEOUT_S, REQUEST_TIMEOUT_S};

/// Connections kept open per host: one per bot at most is plenty.
const MAX_IDLE_CONNECTIONS: usize = 4096;

/// The galaxy at one URL.
pub struct HttpApi {
    http: reqwest::Client,
    base: String,
}

impl HttpApi {
    /// A pool of connections to `base` (`http://host:port`, no trailing slash).
    pub fn new(base: &str) -> anyhow::Result<HttpApi> {
        let base = base.trim().trim_end_matches('/').to_string();
        anyhow::ensure!(
            base.starts_with("http://"),
            "--server {base:?}: give an http:// URL, like {}",
            client::DEFAULT_SERVER
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .tcp_nodelay(true)
            .build()?;
        Ok(HttpApi { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn post(&self, path: &str, token: &str, body: &impl Serialize) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder, timeout_s: u64) -> Call<T> {
        let unreachable = |e: reqwest::Error| CallError::Unreachable {
            code: if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            }
            .to_string(),
            message: e.to_string(),
        };
        let resp = req
            .timeout(Duration::from_secs(timeout_s))
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let retry_after_s = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| CallError::Unreachable {
                code: "bad_answer".into(),
                message: format!("{} answered something else than the API: {e}", self.base),
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => (error.code, error.message),
            Err(_) => ("http_error".to_string(), format!("HTTP {status}")),
        };
        if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
            Err(CallError::Refused {
                status: status.as_u16(),
                code,
                message,
                retry_after_s,
            })
        } else {
            Err(CallError::Unreachable { code, message })
        }
    }
}

impl GameApi for HttpApi {
    async fn systems(&self) -> Call<Vec<SystemView>> {
        let req = self.http.get(format!("{}/v1/systems", self.base));
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    async fn join(&self, name: &str) -> Call<Joined> {
        let req = self
            .http
            .post(format!("{}/v1/join", self.base))
            .json(&JoinRequest {
                name: name.to_string(),
            });
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    async fn me(&self, token: &str) -> Call<Me> {
        self.send(self.get("/v1/me", token), REQUEST_TIMEOUT_S)
            .await
    }

    async fn market(&self, token: &str) -> Call<Market> {
        self.send(self.get("/v1/market", token), REQUEST_TIMEOUT_S)
            .await
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
        self.send(self.post("/v1/trade", token, &body), REQUEST_TIMEOUT_S)
            .await
    }

    async fn refuel(&self, token: &str, units: Option<u32>) -> Call<Refueled> {
        let body = RefuelRequest { units };
        self.send(self.post("/v1/refuel", token, &body), REQUEST_TIMEOUT_S)
            .await
    }

    async fn travel(&self, token: &str, to: &str) -> Call<Traveled> {
        let body = TravelRequest {
            to: to.to_string(),
            from: None,
            wait: false,
        };
        self.send(self.post("/v1/travel", token, &body), REQUEST_TIMEOUT_S)
            .await
    }

    async fn landing(&self, token: &str) -> Call<Landed> {
        loop {
            match self
                .send(self.get("/v1/landing", token), LANDING_TIMEOUT_S)
                .await
            {
                // The server waits at most a minute, then asks to ask again.
                Err(CallError::Refused { code, .. }) if code == "in_jump" => continue,
                other => return other,
            }
        }
    }

    async fn scan(&self, token: &str) -> Call<Scan> {
        self.send(self.get("/v1/scan", token), REQUEST_TIMEOUT_S)
            .await
    }

    async fn attack(&self, token: &str, target: &str) -> Call<Attacked> {
        let body = AttackRequest {
            target: Some(Some(target.to_string())),
        };
        self.send(self.post("/v1/attack", token, &body), REQUEST_TIMEOUT_S)
            .await
    }
}
