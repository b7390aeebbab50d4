//! Fuzz check for every JSON body and query string the API accepts (the request types of
//! `crates/api/src/request.rs`), read as clients read them (serde_json, serde_urlencoded) and as
//! the server reads them (`net::routes::Body`, strict JSON; `net::routes::Params`, axum's
//! `Query`), then through the server's own validation of what was read (player names, goods,
//! system names).
//!
//! The first byte of an input picks the request type (`j` join, `t` travel, `r` refuel, `b`
//! trade, `a` attack, `l` loot, `m` market, `o` route, `h` history, `s` scan; any other byte by
//! its value modulo 10), the rest is the body or the query string.
//!
//! Properties: nothing panics; a refusal is a 4xx with a code and a message, never a 5xx; what
//! is accepted re-serializes to text that is accepted again as an equal value, by the server and
//! by serde alone; the server reads a query string exactly as serde_urlencoded does; a
//! validation that accepts a value accepts its canonical form as the same value.
//!
//! Never starts a server: the extractors run on in-memory requests.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use api::{
    AttackRequest, HistoryQuery, JoinRequest, LootRequest, MarketQuery, RefuelRequest, RouteQuery,
    ScanQuery, TradeRequest, TravelRequest,
};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, Uri};
use mltrader_net::error::ApiError;
use mltrader_net::routes::{system, Body, Params};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sim::galaxy::Galaxy;
use sim::goods::Good;
use sim::names::{canonical, key};

/// What a request type's value is checked against once read.
trait Validate {
    /// Runs the server's validation of the value's fields, checking its own properties.
    fn validate(&self);
}

/// Checks one fuzz input; returns whether it was accepted as the request type it names.
pub fn check(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    let kind = match first {
        b'j' => 0,
        b't' => 1,
        b'r' => 2,
        b'b' => 3,
        b'a' => 4,
        b'l' => 5,
        b'm' => 6,
        b'o' => 7,
        b'h' => 8,
        b's' => 9,
        other => other % 10,
    };
    match kind {
        0 => check_body::<JoinRequest>(rest),
        1 => check_body::<TravelRequest>(rest),
        2 => check_body::<RefuelRequest>(rest),
        3 => check_body::<TradeRequest>(rest),
        4 => check_body::<AttackRequest>(rest),
        5 => check_body::<LootRequest>(rest),
        6 => check_query::<MarketQuery>(rest),
        7 => check_query::<RouteQuery>(rest),
        8 => check_query::<HistoryQuery>(rest),
        _ => check_query::<ScanQuery>(rest),
    }
}

/// The galaxy system names are looked up in (the default one, built once).
fn galaxy() -> &'static Galaxy {
    static GALAXY: OnceLock<Galaxy> = OnceLock::new();
    GALAXY.get_or_init(Galaxy::default_galaxy)
}

/// Runs a future that must not wait: the extractors over an in-memory request.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("an extractor waited on an in-memory request"),
    }
}

/// A refusal must be the client's fault, with a code and a message.
fn assert_refusal(e: &ApiError, what: &str) {
    assert!(
        e.status.is_client_error(),
        "{what} refused with {} {}: {}",
        e.status,
        e.code,
        e.message
    );
    assert!(!e.message.is_empty(), "{what} refused without a message");
}

/// `bytes` as a JSON body of a POST, read the way the server reads it.
fn body_as_server_reads<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/fuzz")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(bytes.to_vec()))
        .expect("a request with a fixed head builds");
    now(Body::<T>::from_request(req, &())).map(|Body(v)| v)
}

fn check_body<T>(bytes: &[u8]) -> bool
where
    T: DeserializeOwned + Serialize + PartialEq + Debug + Validate,
{
    // As a client reads it (serde_json alone): accepted values round-trip.
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let text = serde_json::to_string(&v).expect("a request serializes");
        let again = serde_json::from_str::<T>(&text)
            .unwrap_or_else(|e| panic!("serde_json refuses its own {text}: {e}"));
        assert_eq!(again, v, "changed by a round trip through {text}");
    }
    // As the server reads it.
    let v = match body_as_server_reads::<T>(bytes) {
        Ok(v) => v,
        Err(e) => {
            assert_refusal(&e, "a body");
            return false;
        }
    };
    let text = serde_json::to_string(&v).expect("a request serializes");
    let again = body_as_server_reads::<T>(text.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "the server refuses {text}, written from {v:?}: {}",
            e.message
        )
    });
    assert_eq!(again, v, "changed by a round trip through {text}");
    v.validate();
    true
}

/// The query string of `uri` read the way the server reads it.
fn query_as_server_reads<T: DeserializeOwned>(uri: Uri) -> Result<T, ApiError> {
    let req = Request::builder()
        .method("GET")
        .uri(uri)
        .body(axum::body::Body::empty())
        .expect("a request with a parsed URI builds");
    let (mut parts, _) = req.into_parts();
    now(Params::<T>::from_request_parts(&mut parts, &())).map(|Params(v)| v)
}

/// The query `text` in a request's URI, if it can be one.
fn uri_with_query(text: &str) -> Option<Uri> {
    format!("/v1/fuzz?{text}").parse().ok()
}

fn check_query<T>(bytes: &[u8]) -> bool
where
    T: DeserializeOwned + Serialize + PartialEq + Debug + Validate,
{
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    // As a client library reads it: accepted values round-trip.
    if let Ok(v) = serde_urlencoded::from_str::<T>(text) {
        let written = serde_urlencoded::to_string(&v).expect("a query serializes");
        let again = serde_urlencoded::from_str::<T>(&written)
            .unwrap_or_else(|e| panic!("serde_urlencoded refuses its own {written:?}: {e}"));
        assert_eq!(again, v, "changed by a round trip through {written:?}");
    }
    // As the server reads it, when the text can be a URI's query at all.
    let Some(uri) = uri_with_query(text) else {
        return false;
    };
    let query = uri.query().unwrap_or("").to_string();
    let server = query_as_server_reads::<T>(uri);
    let plain = serde_urlencoded::from_str::<T>(&query);
    let v = match (server, plain) {
        (Ok(v), Ok(p)) => {
            assert_eq!(v, p, "the server reads {query:?} unlike serde_urlencoded");
            v
        }
        (Err(e), Err(_)) => {
            assert_refusal(&e, "a query");
            return false;
        }
        (Ok(v), Err(e)) => panic!("the server takes {query:?} as {v:?}, serde refuses: {e}"),
        (Err(e), Ok(p)) => panic!(
            "the server refuses {query:?} ({}), serde reads {p:?}",
            e.message
        ),
    };
    let written = serde_urlencoded::to_string(&v).expect("a query serializes");
    let uri = uri_with_query(&written)
        .unwrap_or_else(|| panic!("{v:?} is written as {written:?}, not a URI's query"));
    let again = query_as_server_reads::<T>(uri).unwrap_or_else(|e| {
        panic!(
            "the server refuses {written:?}, written from {v:?}: {}",
            e.message
        )
    });
    assert_eq!(again, v, "changed by a round trip through {written:?}");
    v.validate();
    true
}

/// A system name as the server reads it: whatever it finds, its own name finds again.
fn validate_system(name: &str) {
    let g = galaxy();
    if let Ok(id) = system(g, name) {
        let again = system(g, g.name(id)).unwrap_or_else(|e| {
            panic!(
                "{name:?} finds {}, which is not found: {}",
                g.name(id),
                e.message
            )
        });
        assert_eq!(
            again,
            id,
            "{name:?} and {} name different systems",
            g.name(id)
        );
    }
}

impl Validate for JoinRequest {
    /// The player name rules: a name they accept is kept in a canonical form that they accept
    /// as itself, with the same uniqueness key.
    fn validate(&self) {
        if let Ok(name) = canonical(&self.name) {
            assert_eq!(
                canonical(&name).as_ref(),
                Ok(&name),
                "canonical form not stable"
            );
            assert_eq!(key(&name), key(&canonical(&name).unwrap()));
        }
    }
}

impl Validate for TravelRequest {
    fn validate(&self) {
        validate_system(&self.to);
        if let Some(from) = &self.from {
            validate_system(from);
        }
    }
}

impl Validate for RefuelRequest {
    /// Nothing beyond the body's types: the rules check the units against the tank.
    fn validate(&self) {}
}

impl Validate for TradeRequest {
    /// A good the server reads is read again from its own name.
    fn validate(&self) {
        if let Ok(good) = Good::parse(&self.good) {
            assert_eq!(Good::parse(good.name()), Ok(good), "{}", good.name());
        }
    }
}

impl Validate for AttackRequest {
    /// Nothing beyond the body's types: the target is looked up among the players present.
    fn validate(&self) {}
}

impl Validate for LootRequest {
    /// Nothing beyond the body's types (`body_integer` bounds the id).
    fn validate(&self) {
        assert!(
            self.wreck <= api::MAX_BODY_INTEGER,
            "wreck {} accepted",
            self.wreck
        );
    }
}

impl Validate for MarketQuery {
    fn validate(&self) {
        if let Some(name) = &self.system {
            validate_system(name);
        }
    }
}

impl Validate for RouteQuery {
    fn validate(&self) {
        validate_system(&self.from);
        validate_system(&self.to);
    }
}

impl Validate for HistoryQuery {
    /// Nothing beyond the query's types: the handler clamps the limit.
    fn validate(&self) {}
}

impl Validate for ScanQuery {
    /// Nothing beyond the query's types: the handler clamps the limit.
    fn validate(&self) {}
}
