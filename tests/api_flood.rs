//! One client holding thousands of half-sent requests open (the attack of issue 15): a real
//! `mltrader serve` whose open-file limit is low enough for the flood to reach it. Other
//! clients keep being answered promptly, and the server closes every half-request (at once over
//! the per-address cap, after the header or body timeout otherwise).
//!
//! Before the accept loop of `net::server` the flood took every descriptor: the server logged
//! `accept error: Too many open files` every second and `GET /v1/status` never answered.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Http, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The server's open-file limit: below the flood's size, so that without caps it runs out.
const FD_LIMIT: u64 = 2_048;
/// Half-sent request heads (`GET` without the blank line that ends the head).
const HALF_HEADERS: usize = 3_000;
/// Requests whose body is shorter than their `Content-Length`.
const HALF_BODIES: usize = 1_000;
/// The server's timeouts in this test, in seconds.
const HEADER_TIMEOUT_S: u64 = 2;
const BODY_TIMEOUT_S: u64 = 2;
/// How long a normal request may take while the flood is open.
const PROMPT: Duration = Duration::from_secs(2);
/// Connections opened at once while flooding (the listen backlog holds the rest).
const FLOOD_BATCH: usize = 100;

/// Long enough for a SYN sent again (after 1 s: a client port picked again while the server
/// still holds its last connection in TIME_WAIT gets one), short enough to end a flood that a
/// server no longer accepts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections of the flood that may fail to open although the server accepts (see above).
const MAY_NOT_CONNECT: usize = (HALF_HEADERS + HALF_BODIES) / 100;

/// The attacker's addresses: loopback, but not the 127.0.0.1 of the normal clients.
const HEADER_FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BODY_FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

const HALF_HEAD: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n";
const HALF_BODY: &[u8] = b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": \"sl";

/// Opens `n` connections from `from` to `to`, each sending `bytes` and then nothing. A
/// connection that cannot be opened within [`CONNECT_TIMEOUT`] is counted, not kept: it means
/// the server no longer accepts.
async fn flood(from: Ipv4Addr, to: SocketAddr, n: usize, bytes: &'static [u8]) -> Flood {
    let mut out = Flood::default();
    let mut left = n;
    while left > 0 {
        let batch = left.min(FLOOD_BATCH);
        left -= batch;
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            opening.spawn(async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
                let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to))
                    .await
                    .map_err(|_| std::io::Error::other("connect timed out"))??;
                // The server may have closed it at once (over a cap): then this write fails,
                // which is fine; the socket is read for its end later.
                let _ = tcp.write_all(bytes).await;
                std::io::Result::Ok(tcp)
            });
        }
        for opened in opening.join_all().await {
            match opened {
                Ok(tcp) => out.open.push(tcp),
                Err(e) => {
                    out.not_connected += 1;
                    out.first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    out
}

#[derive(Default)]
struct Flood {
    open: Vec<TcpStream>,
    not_connected: usize,
    first_error: Option<String>,
}

/// Reads `tcp` until the server closes it (EOF or reset) or `deadline` passes; true if closed.
async fn closed_by(mut tcp: TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 4xx for the body that never came) before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// How many of `sockets` the server closes by `deadline`.
async fn count_closed(sockets: Vec<TcpStream>, deadline: tokio::time::Instant) -> usize {
    let mut reads = tokio::task::JoinSet::new();
    for tcp in sockets {
        reads.spawn(closed_by(tcp, deadline));
    }
    reads.join_all().await.into_iter().filter(|c| *c).count()
}

/// Runs `what` and asserts it took at most [`PROMPT`].
async fn promptly<T>(label: &str, what: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(PROMPT, what)
        .await
        .unwrap_or_else(|_| panic!("{label} did not answer within {PROMPT:?} during the flood"));
    eprintln!("{label}: {:?}", started.elapsed());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_requests_neither_starve_other_clients_nor_stay_open() {
    let header_s = HEADER_TIMEOUT_S.to_string();
    let body_s = BODY_TIMEOUT_S.to_string();
    let server = Server::start_limited(
        None,
        &[],
        // One shard a system: the reserve of 16 instances a system would not fit 2,048 files.
        &[
            "--max-instances",
            "1",
            "--header-timeout-s",
            &header_s,
            "--body-timeout-s",
            &body_s,
        ],
        Some(FD_LIMIT),
    );
    let addr: SocketAddr = server
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("server address");

    let started = Instant::now();
    let heads = flood(HEADER_FLOODER, addr, HALF_HEADERS, HALF_HEAD).await;
    let bodies = flood(BODY_FLOODER, addr, HALF_BODIES, HALF_BODY).await;
    let flooded_in = started.elapsed();
    eprintln!(
        "flood open in {flooded_in:?}: {} half-heads, {} half-bodies connected ({} and {} not: {:?} {:?})",
        heads.open.len(),
        bodies.open.len(),
        heads.not_connected,
        bodies.not_connected,
        heads.first_error,
        bodies.first_error,
    );

    // Other clients are answered promptly while every half-request is still open.
    let http = Http::new(server.url());
    let status = promptly("GET /v1/status", http.get("/v1/status", None)).await;
    assert_eq!(status.status, 200, "{status:?}");
    let token = promptly("POST /v1/join", http.join("steady")).await;
    let travel = promptly(
        "POST /v1/travel",
        http.post("/v1/travel", Some(&token), json!({"to": "Barnard's Star"})),
    )
    .await;
    assert_eq!(travel.status, 200, "{travel:?}");
    assert!(
        flooded_in < Duration::from_secs(30),
        "opening the flood took {flooded_in:?}: the server stopped accepting"
    );
    assert!(
        heads.not_connected + bodies.not_connected <= MAY_NOT_CONNECT,
        "{} connections the server never accepted",
        heads.not_connected + bodies.not_connected
    );

    // Every half-request is closed: over the per-address cap at once, the others after their
    // timeout (the slack covers a loaded machine).
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(HEADER_TIMEOUT_S.max(BODY_TIMEOUT_S) + 5);
    let (held_heads, held_bodies) = (heads.open.len(), bodies.open.len());
    let closed_heads = count_closed(heads.open, deadline).await;
    let closed_bodies = count_closed(bodies.open, deadline).await;
    assert_eq!(
        (closed_heads, closed_bodies),
        (held_heads, held_bodies),
        "half-heads and half-bodies the server closed, of those it accepted"
    );
    let again = promptly(
        "GET /v1/status after the flood",
        http.get("/v1/status", None),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");

    // The refusals were counted (and said when the server stopped).
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.stop_in_place();
        (status, server)
    });
    let (exit, server) = exit.await.unwrap();
    assert!(exit.success(), "graceful stop after the flood: {exit}");
    // Over the per-address cap the rest of each address's flood was refused; a flood slower
    // than the timeouts saw places freed as it went, each timeout's worth of time.
    let per_address = mltrader::net::connections::DEFAULT_MAX_CONNECTIONS_PER_IP;
    let timeouts_during_flood =
        1 + flooded_in.as_secs() as usize / HEADER_TIMEOUT_S.min(BODY_TIMEOUT_S) as usize;
    let held_at_most = 2 * per_address * timeouts_during_flood;
    let refused_at_least = (HALF_HEADERS + HALF_BODIES).saturating_sub(held_at_most);
    let said = server
        .output()
        .into_iter()
        .find(|l| l.starts_with("refused "))
        .unwrap_or_else(|| panic!("no refusal count in {:?}", server.output()));
    let refused: usize = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {said:?}"));
    assert!(
        refused >= refused_at_least.max(1) && refused <= HALF_HEADERS + HALF_BODIES,
        "{said:?}: at least {refused_at_least} were over the per-address cap"
    );
}
