//! Any node answers any player (issue 19, decision 9), the NATS half, against a real
//! three-node cluster: a request forwarded to a unit's owner and answered once; "no responders"
//! retried while a takeover is under way, then given up; an owner that dies with a request in
//! hand leaves its outcome unknown (and is never asked again); the scatter question of where a
//! player is; the galaxy's accounts.
//!
//! Small: a few seconds on the shared cluster. The nodes are separate connections (each to any
//! of the three servers), as separate processes would be.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mltrader_nats::accounts::Accounts;
use mltrader_nats::requests::{
    Handler, RequestError, Requester, Responder, NO_RESPONDERS_RETRY_FOR_MS, STOP_GRACE_MS,
};
use mltrader_nats::whereis::{self, Answerer, Lookup, Whereabouts};

/// A handler that answers `<node>:<payload>` and counts its calls.
fn echo(node: &'static str, calls: Arc<AtomicUsize>) -> Handler {
    Arc::new(move |payload: Vec<u8>| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut answer = format!("{node}:").into_bytes();
            answer.extend(payload);
            answer
        })
    })
}

const TIMEOUT: Duration = Duration::from_secs(2);

/// How long the tests let an unsubscription travel between the servers.
const ROUTE_SETTLE_MS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_answered_once_by_one_owner_of_the_unit() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let (a, b, c) = (
        cluster.connect("a"),
        cluster.connect("b"),
        cluster.connect("c"),
    );
    let (calls_b, calls_c) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Two members of the queue group (as during a hand-over's instant): each request goes to
    // one of them, never both.
    let _rb = Responder::start(&b, "sys.sol", echo("b", calls_b.clone()))
        .await
        .unwrap();
    let _rc = Responder::start(&c, "sys.sol", echo("c", calls_c.clone()))
        .await
        .unwrap();
    let requester = Requester::new(&a);
    let mut latencies = Vec::new();
    const REQUESTS: usize = 40;
    for i in 0..REQUESTS {
        let started = Instant::now();
        let answer = requester
            .forward(
                "sys.sol",
                &format!("r{i}"),
                format!("hello {i}").into_bytes(),
                TIMEOUT,
            )
            .await
            .unwrap();
        latencies.push(started.elapsed());
        let answer = String::from_utf8(answer).unwrap();
        assert!(
            answer == format!("b:hello {i}") || answer == format!("c:hello {i}"),
            "{answer}"
        );
    }
    let (nb, nc) = (
        calls_b.load(Ordering::SeqCst),
        calls_c.load(Ordering::SeqCst),
    );
    assert_eq!(
        nb + nc,
        REQUESTS,
        "each request handled once: b {nb}, c {nc}"
    );
    latencies.sort();
    println!(
        "{REQUESTS} requests: b answered {nb}, c {nc}; round trip p50 {:?}, max {:?}",
        latencies[REQUESTS / 2],
        latencies[REQUESTS - 1]
    );
    // Another unit has nobody.
    let e = requester
        .forward("sys.alpha-centauri", "r-x", b"x".to_vec(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::NoResponders { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_retried_while_a_takeover_is_under_way_then_given_up() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let (a, b) = (cluster.connect("a"), cluster.connect("b"));
    let requester = Requester::new(&a);
    let calls = Arc::new(AtomicUsize::new(0));
    let first = Responder::start(&b, "sys.barnards-star", echo("b", calls.clone()))
        .await
        .unwrap();
    let answer = requester
        .forward("sys.barnards-star", "q1", b"one".to_vec(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer, b"b:one");
    // The owner hands the unit over: nobody answers for a while, then the new owner does.
    first.stop().await;
    // The other servers hear of the unsubscription over their routes (see
    // a_request_sent_just_after_the_owners_stop_is_not_lost).
    tokio::time::sleep(Duration::from_millis(ROUTE_SETTLE_MS)).await;
    let (b2, calls2) = (b.clone(), calls.clone());
    let takeover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(NO_RESPONDERS_RETRY_FOR_MS / 3)).await;
        Responder::start(&b2, "sys.barnards-star", echo("new", calls2))
            .await
            .unwrap()
    });
    let started = Instant::now();
    let answer = requester
        .forward("sys.barnards-star", "q2", b"two".to_vec(), TIMEOUT)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer, b"new:two", "the new owner answered");
    assert!(
        waited >= Duration::from_millis(NO_RESPONDERS_RETRY_FOR_MS / 3 - 50),
        "it waited for the new owner: {waited:?}"
    );
    println!(
        "answered by the new owner {waited:?} after the send (it subscribed at {} ms)",
        NO_RESPONDERS_RETRY_FOR_MS / 3
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each request ran once");
    // Nobody comes: given up after the bound, the request never delivered.
    takeover.await.unwrap().stop().await;
    tokio::time::sleep(Duration::from_millis(ROUTE_SETTLE_MS)).await;
    let started = Instant::now();
    let e = requester
        .forward("sys.barnards-star", "q3", b"three".to_vec(), TIMEOUT)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    match e {
        RequestError::NoResponders { unit, waited_ms } => {
            assert_eq!(unit, "sys.barnards-star");
            assert!(waited_ms >= NO_RESPONDERS_RETRY_FOR_MS, "{waited_ms}");
        }
        other => panic!("expected no responders, got {other}"),
    }
    assert!(
        waited < Duration::from_millis(NO_RESPONDERS_RETRY_FOR_MS) + TIMEOUT,
        "bounded: {waited:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_racing_the_owners_stop_is_answered_not_lost() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let (a, b) = (cluster.connect("a"), cluster.connect("b"));
    let requester = Requester::new(&a);
    const ROUNDS: usize = 10;
    let (mut answered, mut no_responders) = (0, 0);
    for round in 0..ROUNDS {
        let responder =
            Responder::start(&b, "sys.luyten", echo("b", Arc::new(AtomicUsize::new(0))))
                .await
                .unwrap();
        // Known to the requester's server too before the race starts.
        requester
            .forward("sys.luyten", "warm", b"w".to_vec(), TIMEOUT)
            .await
            .unwrap();
        let r = requester.clone();
        let send = tokio::spawn(async move {
            r.forward(
                "sys.luyten",
                &format!("race{round}"),
                b"x".to_vec(),
                TIMEOUT,
            )
            .await
        });
        drop(responder);
        match send.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer, b"b:x");
                answered += 1;
            }
            Err(RequestError::NoResponders { .. }) => no_responders += 1,
            Err(e) => panic!("round {round}: a request racing a stop: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(STOP_GRACE_MS + 50)).await;
    }
    println!("{ROUNDS} requests racing a stop: {answered} answered, {no_responders} no responders, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_dies_with_the_request_in_hand_leaves_its_outcome_unknown() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let a = cluster.connect("a");
    let doomed = cluster.connect("doomed");
    let (got, got_rx) = tokio::sync::oneshot::channel::<()>();
    let got = Arc::new(std::sync::Mutex::new(Some(got)));
    let handler: Handler = Arc::new(move |_payload: Vec<u8>| {
        if let Some(got) = got.lock().unwrap().take() {
            let _ = got.send(());
        }
        // Never answers: the process dies first.
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Vec::new()
        })
    });
    let responder = Responder::start(&doomed, "sys.wolf-359", handler)
        .await
        .unwrap();
    let requester = Requester::new(&a);
    let send = tokio::spawn(async move {
        let started = Instant::now();
        let result = requester
            .forward("sys.wolf-359", "req-7f3a", b"trade".to_vec(), TIMEOUT)
            .await;
        (result, started.elapsed(), requester)
    });
    got_rx.await.unwrap();
    // The owner's connection dies with the request in hand (its process would be SIGKILLed).
    drop(doomed);
    drop(responder);
    let (result, waited, requester) = send.await.unwrap();
    match result {
        Err(RequestError::OutcomeUnknown {
            unit,
            request_id,
            timeout_ms,
        }) => {
            assert_eq!(
                (unit.as_str(), request_id.as_str()),
                ("sys.wolf-359", "req-7f3a")
            );
            assert_eq!(timeout_ms, TIMEOUT.as_millis() as u64);
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert!(waited >= TIMEOUT, "it waited the timeout: {waited:?}");
    // Nobody owns the unit now: the next request is not delivered to the dead owner.
    let e = requester
        .forward("sys.wolf-359", "req-7f3b", b"again".to_vec(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::NoResponders { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_a_player_is_is_answered_by_the_nodes_that_hold_them_in_first() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let (a, b, asker) = (
        cluster.connect("a"),
        cluster.connect("b"),
        cluster.connect("asker"),
    );
    let holds = |table: &'static [(&'static str, &'static str, Whereabouts)]| -> Lookup {
        Arc::new(move |name: &str| {
            table
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, unit, at)| (unit.to_string(), *at))
        })
    };
    // Ann is in Sol on a, and a jump of hers towards Alpha Centauri is known to b (a stale
    // view during a landing); Bob is arriving at b's unit only.
    let _wa = Answerer::start(&a, holds(&[("Ann", "sys.sol", Whereabouts::In)]))
        .await
        .unwrap();
    let _wb = Answerer::start(
        &b,
        holds(&[
            ("Ann", "sys.alpha-centauri", Whereabouts::Arriving),
            ("Bob", "sys.alpha-centauri", Whereabouts::Arriving),
        ]),
    )
    .await
    .unwrap();
    let window = Duration::from_millis(500);
    // Interest on the other servers may take a moment to be known: ask until both answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ann = loop {
        let heard = whereis::ask(&asker, "Ann", window).await.unwrap();
        if heard.best.as_ref().is_some_and(|s| s.at == Whereabouts::In) || Instant::now() > deadline
        {
            break heard;
        }
    };
    let best = ann.best.unwrap();
    assert_eq!(
        (best.unit.as_str(), best.at, best.node.as_str()),
        ("sys.sol", Whereabouts::In, "a")
    );

    let started = Instant::now();
    let bob = whereis::ask(&asker, "Bob", window).await.unwrap();
    let bob_took = started.elapsed();
    let best = bob.best.unwrap();
    assert_eq!(
        (best.unit.as_str(), best.at),
        ("sys.alpha-centauri", Whereabouts::Arriving)
    );
    assert!(
        bob_took >= window,
        "an 'arriving' waits the window out: {bob_took:?}"
    );

    let started = Instant::now();
    let nobody = whereis::ask(&asker, "Cy", window).await.unwrap();
    assert_eq!(nobody.best, None);
    assert!(nobody.answers.is_empty());
    assert!(started.elapsed() >= window);

    let started = Instant::now();
    let heard = whereis::ask(&asker, "Ann", window).await.unwrap();
    let took = started.elapsed();
    assert_eq!(heard.best.unwrap().at, Whereabouts::In);
    assert!(took < window, "an 'in' ends the wait: {took:?}");
    println!("where is Ann (in): {took:?}; Bob (arriving only): {bob_took:?} (window {window:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_recorded_on_one_node_is_found_on_another() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let (a, b) = (cluster.connect("a"), cluster.connect("b"));
    let (on_a, on_b) = (
        Accounts::open(&a, "mlt_accounts_test", 3).unwrap(),
        Accounts::open(&b, "mlt_accounts_test", 3).unwrap(),
    );
    let key = "0f".repeat(32);
    assert_eq!(on_b.get(&key).await.unwrap(), None);
    on_a.put(&key, "Ann").await.unwrap();
    assert_eq!(on_b.get(&key).await.unwrap().as_deref(), Some("Ann"));
    // A retry of the same write (its answer lost) succeeds; another name is refused.
    on_a.put(&key, "Ann").await.unwrap();
    let e = on_b.put(&key, "Mallory").await.unwrap_err().to_string();
    assert!(
        e.contains("recorded for Some(\"Ann\")") && e.contains("Mallory"),
        "{e}"
    );
    assert_eq!(on_a.get(&key).await.unwrap().as_deref(), Some("Ann"));
    // Bad input is refused saying what and where, and nothing is written.
    let e = on_a.put("not-a-key", "Bob").await.unwrap_err().to_string();
    assert!(
        e.contains("not-a-key") && e.contains("64 lowercase hex"),
        "{e}"
    );
    let e = on_a
        .put(&"1a".repeat(32), "")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 to 256 bytes"), "{e}");
    assert_eq!(on_a.get(&"1a".repeat(32)).await.unwrap(), None);
}

/// The window a stop leaves: a request sent just after the owner's stop returned can reach a
/// server that still believes in the owner's subscription, and is dropped there. Without the
/// owner's receipt 6 of 10 were lost (an unknown outcome for a request that never ran); with
/// it the sender sends again and is told "no responders". `MLTRADER_REQUEST_RACE_ROUNDS` sets
/// the rounds (default 6: each waits out the 2 s of refusals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_just_after_the_owners_stop_is_not_lost() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let rounds: usize = std::env::var("MLTRADER_REQUEST_RACE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let (a, b) = (cluster.connect("a"), cluster.connect("b"));
    let requester = Requester::new(&a);
    let (mut answered, mut no_responders, mut lost) = (0, 0, 0);
    for round in 0..rounds {
        let responder =
            Responder::start(&b, "sys.ross-128", echo("b", Arc::new(AtomicUsize::new(0))))
                .await
                .unwrap();
        requester
            .forward("sys.ross-128", "warm", b"w".to_vec(), TIMEOUT)
            .await
            .unwrap();
        responder.stop().await;
        match requester
            .forward(
                "sys.ross-128",
                &format!("after{round}"),
                b"x".to_vec(),
                Duration::from_millis(500),
            )
            .await
        {
            Ok(_) => answered += 1,
            Err(RequestError::NoResponders { .. }) => no_responders += 1,
            Err(RequestError::OutcomeUnknown { .. }) => lost += 1,
            Err(e) => panic!("{e}"),
        }
    }
    println!("{rounds} requests sent just after a stop: {answered} answered, {no_responders} no responders, {lost} lost (outcome unknown)");
    assert_eq!(answered, 0, "nobody answers after a stop");
    assert_eq!(
        lost, 0,
        "a request nobody received is not an unknown outcome"
    );
}
