//! The pair subjects of issue 19 (`mltrader_nats::pairs::NatsLinks`, mesh's `links::Links`)
//! against a real three-node cluster: a publish read back from the start, from a position and
//! live; a republish stored once; a zombie origin fenced by a newer owner's marks; lost acks
//! neither reordering nor duplicating; lease marks skipped and a malformed message reported;
//! and, on a cluster of its own, every jump read once and in order per pair while the jumps'
//! stream leader is SIGKILLed under publishers and readers.
//!
//! The tests sharing a cluster share the stream `MLT_JUMPS` and its duplicate window, so each
//! takes systems no other test touches ([`lane`]): its own origins (transfer ids are message
//! ids) and its own destinations (a reader reads every lane into its destination).
//!
//! Small by default (seconds, and about 15 s for the leader's death); by hand,
//! `MLTRADER_PAIRS_JUMPS=N` sets the jumps per pair of the leader test (default 40),
//! `MLTRADER_PAIRS_KILLS=K` how many leaders it kills in turn (default 1), and
//! `MLTRADER_PAIRS_RATE=PAIRSxJUMPS` the size of the rate test (default 4x25; at most 7
//! pairs: the galaxy's disjoint lanes that no other test takes).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::codec::Jump;
use mesh::links::{Arrived, LinkError, Links};
use mesh::protocol::handover::PairSeq;
use mltrader_nats::pairs::{NatsLinks, JUMPS_STREAM};
use mltrader_nats::Nats;
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::player::Player;
use sim::rules::Rules;
use store::seq::Seq;
use tokio::sync::mpsc;

/// How long a test waits for a reader to deliver what it expects.
const READ_WAIT: Duration = Duration::from_secs(30);

fn galaxy() -> Arc<Galaxy> {
    Arc::new(Galaxy::default_galaxy())
}

/// Lanes no two of which share a system (greedy over the galaxy's lanes).
fn disjoint_lanes(g: &Galaxy) -> Vec<(SystemId, SystemId)> {
    let mut used: Vec<SystemId> = Vec::new();
    let mut disjoint = Vec::new();
    for (a, b) in g.lanes() {
        if !used.contains(&a) && !used.contains(&b) {
            used.extend([a, b]);
            disjoint.push((a, b));
        }
    }
    disjoint
}

/// Lane `k` of [`disjoint_lanes`]: test `k` owns both its systems (the rate test takes those
/// from [`FIRST_RATE_LANE`] on).
fn lane(g: &Galaxy, k: usize) -> (SystemId, SystemId) {
    let disjoint = disjoint_lanes(g);
    assert!(
        k < disjoint.len(),
        "the galaxy has {} disjoint lanes",
        disjoint.len()
    );
    disjoint[k]
}

/// The first lane of [`disjoint_lanes`] the rate test takes; those before are the other tests'.
const FIRST_RATE_LANE: usize = 7;

/// Jump `xfer` of origin instance `from` to system `to`'s primary instance.
fn jump(from: InstanceId, to: SystemId, xfer: u64) -> Jump {
    Jump {
        from,
        xfer: Xfer(xfer),
        to: InstanceId::primary(to),
        t: Tick(100 + xfer),
        travel_ticks: 3,
        player: Player::starter(&format!("pilot{xfer}"), &Rules::default()),
        tseq: Seq(0),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(nats: &Nats, g: &Arc<Galaxy>, node: &str) -> NatsLinks {
    NatsLinks::open(nats, g.clone(), 3, node).unwrap()
}

/// Starts reading towards `to` from `after`; the receiving end.
fn reader(
    links: &NatsLinks,
    to: SystemId,
    after: BTreeMap<SystemId, PairSeq>,
) -> mpsc::Receiver<Result<Arrived, LinkError>> {
    let (sink, arrivals) = mpsc::channel(1024);
    links.read_towards(to, after, sink).unwrap();
    arrivals
}

/// The next `n` things a reader sends, within [`READ_WAIT`].
async fn next_n(
    arrivals: &mut mpsc::Receiver<Result<Arrived, LinkError>>,
    n: usize,
) -> Vec<Result<Arrived, LinkError>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(one)) => got.push(one),
            Ok(None) => panic!("the reader ended after {} of {n}", got.len()),
            Err(_) => panic!("{} of {n} read in {READ_WAIT:?}: {got:?}", got.len()),
        }
    }
    got
}

/// Nothing more arrives for a while.
async fn nothing_more(arrivals: &mut mpsc::Receiver<Result<Arrived, LinkError>>) {
    let more = tokio::time::timeout(Duration::from_millis(500), arrivals.recv()).await;
    assert!(more.is_err(), "unexpected: {more:?}");
}

fn ok(got: Vec<Result<Arrived, LinkError>>) -> Vec<Arrived> {
    got.into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Every message of `subject` in order, as (stream sequence, body, headers' node and epoch).
async fn messages(cluster: &common::Cluster, subject: &str) -> Vec<(u64, String, String, String)> {
    let js = cluster.raw().await;
    let stream = js.get_stream(JUMPS_STREAM).await.unwrap();
    let mut out = Vec::new();
    let mut from = 1;
    while let Ok(m) = stream.get_first_raw_message_by_subject(subject, from).await {
        let header = |k: &str| {
            m.headers
                .get(k)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push((
            m.sequence,
            String::from_utf8(m.payload.to_vec()).unwrap(),
            header("Mlt-Node"),
            header("Mlt-Epoch"),
        ));
        from = m.sequence + 1;
    }
    out
}

/// Publishes `body` on `subject` as a foreign writer (no headers), until the stream takes it
/// (a new stream may time out a request or two); its sequence.
async fn raw_publish(cluster: &common::Cluster, subject: &str, body: &[u8]) -> u64 {
    let js = cluster.raw().await;
    let deadline = Instant::now() + READ_WAIT;
    loop {
        let ack = match js.publish(subject.to_string(), body.to_vec().into()).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => return ack.sequence,
            Err(e) => assert!(Instant::now() < deadline, "publish to {subject}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The transfer numbers of the jumps among `messages`, in order.
fn jump_numbers(messages: &[(u64, String, String, String)]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.1.split(' ').nth(1) == Some("jump"))
        .map(|m| {
            let xfer =
                m.1.split(' ')
                    .find_map(|f| f.strip_prefix("xfer="))
                    .unwrap();
            xfer.rsplit_once(':').unwrap().1.parse().unwrap()
        })
        .collect()
}

#[test]
fn a_published_jump_is_read_back_from_the_start_from_a_position_and_live() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 0);
    let origin = InstanceId::primary(from);
    let links = open(&cluster.connect("pairs-read"), &g, "alpha");
    runtime().block_on(async {
        let mut live = reader(&links, to, BTreeMap::new());
        let mut at = Vec::new();
        for x in 1..=3 {
            at.push(links.publish(7, jump(origin, to, x)).await.unwrap());
        }
        assert!(at.windows(2).all(|w| w[0] < w[1]), "positions grow: {at:?}");
        let read = ok(next_n(&mut live, 3).await);
        for (i, a) in read.iter().enumerate() {
            assert_eq!(a.at, at[i]);
            assert_eq!(a.jump, jump(origin, to, i as u64 + 1), "read back whole");
        }

        let mut from_start = reader(&links, to, BTreeMap::new());
        let again: Vec<u64> = ok(next_n(&mut from_start, 3).await)
            .iter()
            .map(|a| a.jump.xfer.0)
            .collect();
        assert_eq!(again, [1, 2, 3]);
        // A position past the subject's end (a stream replaced under a snapshot) is refused.
        let mut past = reader(
            &links,
            to,
            BTreeMap::from([(from, PairSeq(at[2].0 + 1_000))]),
        );
        let Err(LinkError::Malformed(why)) = &next_n(&mut past, 1).await[0] else {
            panic!("a position past the end was read from")
        };
        assert!(why.contains("past the subject's last message"), "{why}");
        let mut after_first = reader(&links, to, BTreeMap::from([(from, at[0])]));
        let rest: Vec<(PairSeq, u64)> = ok(next_n(&mut after_first, 2).await)
            .iter()
            .map(|a| (a.at, a.jump.xfer.0))
            .collect();
        assert_eq!(rest, [(at[1], 2), (at[2], 3)], "after the position only");
        nothing_more(&mut after_first).await;

        // Live: a jump published now reaches every reader still open.
        let fourth = links.publish(7, jump(origin, to, 4)).await.unwrap();
        for r in [&mut live, &mut from_start, &mut after_first] {
            let got = ok(next_n(r, 1).await);
            assert_eq!((got[0].at, got[0].jump.xfer.0), (fourth, 4));
        }

        // On the subject: one record line each, seq 0, with the writer's headers and id.
        let subject = links.subject(from, to);
        let stored = messages(&cluster, &subject).await;
        assert_eq!(jump_numbers(&stored), [1, 2, 3, 4]);
        let first = &stored[0];
        assert_eq!(first.0, at[0].0);
        assert_eq!(
            first.1.as_bytes(),
            NatsLinks::jump_line(&g, &jump(origin, to, 1)),
            "the body is the jump's record line"
        );
        assert!(first.1.starts_with("0 jump xfer="), "{}", first.1);
        assert_eq!((first.2.as_str(), first.3.as_str()), ("alpha", "7"));
        let js = cluster.raw().await;
        let stream = js.get_stream(JUMPS_STREAM).await.unwrap();
        let raw = stream.get_raw_message(at[0].0).await.unwrap();
        let id = raw.headers.get("Nats-Msg-Id").unwrap().as_str().to_string();
        assert_eq!(id, format!("{}:1", g.slug(from)), "the transfer id");
    });
}

#[test]
fn a_republish_of_the_same_transfer_is_stored_once() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 1);
    let origin = InstanceId::primary(from);
    let a = open(&cluster.connect("pairs-dup-a"), &g, "a");
    let b = open(&cluster.connect("pairs-dup-b"), &g, "b");
    runtime().block_on(async {
        a.fence_outgoing(from, 1).await.unwrap();
        let first = a.publish(1, jump(origin, to, 1)).await.unwrap();
        let again = a.publish(1, jump(origin, to, 1)).await.unwrap();
        assert_eq!(
            first, again,
            "a republish is answered with the stored copy's position"
        );
        // A new owner of the origin fences, then republishes what it found committed.
        b.fence_outgoing(from, 2).await.unwrap();
        let by_b = b.publish(2, jump(origin, to, 1)).await.unwrap();
        assert_eq!(by_b, first, "the new owner's republish is a duplicate too");
        assert_eq!(
            a.stats()
                .duplicates
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The new owner's next jump is stored, after its mark.
        let second = b.publish(2, jump(origin, to, 2)).await.unwrap();
        assert!(second > by_b);

        let stored = messages(&cluster, &a.subject(from, to)).await;
        assert_eq!(jump_numbers(&stored), [1, 2], "each transfer once");
        let mut arrivals = reader(&b, to, BTreeMap::new());
        let read: Vec<u64> = ok(next_n(&mut arrivals, 2).await)
            .iter()
            .map(|a| a.jump.xfer.0)
            .collect();
        assert_eq!(read, [1, 2]);
        nothing_more(&mut arrivals).await;
    });
}

#[test]
fn a_zombie_origin_is_refused_after_a_newer_owner_fences_its_pairs() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 2);
    let origin = InstanceId::primary(from);
    let old = open(&cluster.connect("pairs-zombie-old"), &g, "old");
    let new = open(&cluster.connect("pairs-zombie-new"), &g, "new");
    runtime().block_on(async {
        old.fence_outgoing(from, 4).await.unwrap();
        old.publish(4, jump(origin, to, 1)).await.unwrap();
        new.fence_outgoing(from, 5).await.unwrap();

        // The old owner (a zombie now) knows its last publish: refused at the new mark.
        let refused = old.publish(4, jump(origin, to, 2)).await;
        let Err(LinkError::Fenced(why)) = refused else {
            panic!("the zombie's publish: {refused:?}")
        };
        assert!(why.contains("epoch 5") && why.contains("new"), "{why}");
        // A writer of the old epoch that knows nothing of the pair reads its last message.
        let fresh = open(&cluster.connect("pairs-zombie-fresh"), &g, "old");
        let refused = fresh.publish(4, jump(origin, to, 3)).await;
        assert!(matches!(refused, Err(LinkError::Fenced(_))), "{refused:?}");
        // Nor can the old owner fence again under its epoch.
        let refused = old.fence_outgoing(from, 4).await;
        assert!(matches!(refused, Err(LinkError::Fenced(_))), "{refused:?}");

        let subject = new.subject(from, to);
        assert_eq!(jump_numbers(&messages(&cluster, &subject).await), [1]);
        new.publish(5, jump(origin, to, 2)).await.unwrap();
        // The zombie republishes jump 2 (say its ack was lost): a duplicate of the new owner's
        // copy, which must not become the zombie's idea of the subject's last message, or its
        // next publish would pass the fence (the simulator's seed 5 of the cross-node world).
        let dup = old.publish(4, jump(origin, to, 2)).await;
        assert!(dup.is_ok(), "a duplicate is stored: {dup:?}");
        let refused = old.publish(4, jump(origin, to, 3)).await;
        assert!(matches!(refused, Err(LinkError::Fenced(_))), "{refused:?}");
        let stored = messages(&cluster, &subject).await;
        assert_eq!(
            jump_numbers(&stored),
            [1, 2],
            "the zombie's jumps are not stored"
        );
        let epochs: Vec<u64> = stored.iter().map(|m| m.3.parse().unwrap()).collect();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "epochs never decrease: {epochs:?}"
        );
        // Every lane of the origin was fenced by both owners.
        for &lane_to in g.neighbours(from) {
            let marks: Vec<String> = messages(&cluster, &new.subject(from, lane_to))
                .await
                .into_iter()
                .filter(|m| m.1.starts_with("0 lease "))
                .map(|m| m.3)
                .collect();
            assert_eq!(
                marks,
                ["4", "5"],
                "marks on the lane to {}",
                g.slug(lane_to)
            );
            new.check_fencing(from, lane_to).unwrap();
        }
        // A message of the old epoch that got in anyway (a writer that sends no expected
        // sequence) is what check_fencing exists to find. On this test's own pair, last: the
        // fence marks above went to other tests' destinations too, this must not.
        let js = cluster.raw().await;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Mlt-Node", "old");
        headers.insert("Mlt-Epoch", "4");
        let body = NatsLinks::jump_line(&g, &jump(origin, to, 99));
        js.publish_with_headers(subject.clone(), headers, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let breach = new.check_fencing(from, to).unwrap_err();
        println!("check_fencing: {breach}");
        assert!(
            breach.contains(&subject) && breach.contains("epoch 4 after a message of epoch 5"),
            "{breach}"
        );
    });
}

#[test]
fn lost_acks_neither_reorder_nor_duplicate() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 3);
    let primary = InstanceId::primary(from);
    let second = InstanceId::new(from, 2);
    let links = Arc::new(open(&cluster.connect("pairs-lost"), &g, "lossy"));
    runtime().block_on(async {
        links.fence_outgoing(from, 3).await.unwrap();
        const JUMPS: u64 = 8;
        // Two instances of the origin publish at once (they share the pair), each in number
        // order, acks lost now and then.
        let publish_all = |origin: InstanceId, lose_every: u64| {
            let links = links.clone();
            async move {
                for x in 1..=JUMPS {
                    if x % lose_every == 0 {
                        links.simulate_lost_acks_for_tests(1);
                    }
                    links.publish(3, jump(origin, to, x)).await.unwrap();
                }
            }
        };
        tokio::join!(publish_all(primary, 2), publish_all(second, 3));
        let stats = links.stats();
        let duplicates = stats.duplicates.load(std::sync::atomic::Ordering::Relaxed);
        let resynced = stats.resynced.load(std::sync::atomic::Ordering::Relaxed);
        println!("lost acks: {duplicates} duplicates answered, {resynced} resyncs");
        assert!(duplicates >= 1, "a retry after a lost ack is a duplicate");
        assert!(
            resynced >= 1,
            "and the next publish learns the last sequence"
        );

        let mut arrivals = reader(&links, to, BTreeMap::new());
        let read = ok(next_n(&mut arrivals, 2 * JUMPS as usize).await);
        nothing_more(&mut arrivals).await;
        for origin in [primary, second] {
            let numbers: Vec<u64> = read
                .iter()
                .filter(|a| a.jump.from == origin)
                .map(|a| a.jump.xfer.0)
                .collect();
            assert_eq!(
                numbers,
                (1..=JUMPS).collect::<Vec<_>>(),
                "{origin:?}: once, in order"
            );
        }
    });
}

#[test]
fn the_reader_skips_lease_marks_and_reports_a_malformed_message() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 4);
    let origin = InstanceId::primary(from);
    let links = open(&cluster.connect("pairs-malformed"), &g, "m");
    runtime().block_on(async {
        links.fence_outgoing(from, 1).await.unwrap();
        links.publish(1, jump(origin, to, 1)).await.unwrap();
        links.fence_outgoing(from, 2).await.unwrap();
        links.publish(2, jump(origin, to, 2)).await.unwrap();
        let subject = links.subject(from, to);
        let bad = raw_publish(&cluster, &subject, b"0 join player=nobody ~00000000\n").await;
        let mut arrivals = reader(&links, to, BTreeMap::new());
        let got = next_n(&mut arrivals, 3).await;
        let numbers: Vec<u64> = got[..2]
            .iter()
            .map(|r| r.as_ref().unwrap().jump.xfer.0)
            .collect();
        assert_eq!(numbers, [1, 2], "the two marks skipped");
        let Err(LinkError::Malformed(why)) = &got[2] else {
            panic!("{:?}", got[2])
        };
        assert!(
            why.contains(&subject) && why.contains(&format!("sequence {bad}")),
            "names the subject and the sequence: {why}"
        );
        println!("malformed: {why}");
        nothing_more(&mut arrivals).await;
        // At least its own two: other tests fence every lane of their origins, and some of
        // those lead into this test's destination.
        let skipped = links
            .stats()
            .marks_skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(skipped >= 2, "{skipped} marks skipped");
    });
}

#[test]
fn a_jump_of_another_pair_on_a_pair_subject_is_malformed() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 5);
    let (other_from, other_to) = lane(&g, 6);
    let links = open(&cluster.connect("pairs-misfiled"), &g, "m");
    runtime().block_on(async {
        let subject = links.subject(from, to);
        let misfiled =
            NatsLinks::jump_line(&g, &jump(InstanceId::primary(other_from), other_to, 1));
        raw_publish(&cluster, &subject, &misfiled).await;
        let mut arrivals = reader(&links, to, BTreeMap::new());
        let got = next_n(&mut arrivals, 1).await;
        let Err(LinkError::Malformed(why)) = &got[0] else {
            panic!("{:?}", got[0])
        };
        assert!(
            why.contains(&subject) && why.contains("not along this pair"),
            "{why}"
        );
    });
}

#[test]
fn an_older_owner_whose_fence_races_a_newer_one_is_fenced_and_its_mark_not_stored() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (from, to) = lane(&g, 6);
    let origin = InstanceId::primary(from);
    let six = open(&cluster.connect("pairs-race-6"), &g, "six");
    let seven = open(&cluster.connect("pairs-race-7"), &g, "seven");
    // Epoch 6 reads each lane's last message, then waits; epoch 7 fences meanwhile; epoch 6's
    // marks then go out with a stale expected sequence.
    six.simulate_slow_fence_for_tests(Duration::from_millis(3_000));
    runtime().block_on(async {
        let (old, new) = tokio::join!(six.fence_outgoing(from, 6), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            seven.fence_outgoing(from, 7).await
        });
        new.unwrap();
        let raced = six
            .stats()
            .resynced
            .load(std::sync::atomic::Ordering::Relaxed);
        println!("the older fence: {old:?}; {raced} marks refused for a stale expected sequence");
        assert!(matches!(old, Err(LinkError::Fenced(_))), "{old:?}");
        // Every pair subject out of the origin: its lanes and the one towards home.
        let ends = mltrader_nats::pairs::pair_ends_from(&g, from);
        assert_eq!(raced as usize, ends.len(), "every pair raced");
        for lane_to in ends {
            let marks: Vec<String> = messages(&cluster, &seven.subject(from, lane_to))
                .await
                .into_iter()
                .filter(|m| m.1.starts_with("0 lease "))
                .map(|m| m.3)
                .collect();
            assert_eq!(marks, ["7"], "only the newer owner's mark");
            seven.check_fencing(from, lane_to).unwrap();
        }
        let refused = six.publish(6, jump(origin, to, 1)).await;
        assert!(matches!(refused, Err(LinkError::Fenced(_))), "{refused:?}");
        seven.publish(7, jump(origin, to, 1)).await.unwrap();
    });
}

/// The server that leads the jumps' stream once it is not `killed`.
async fn new_leader(cluster: &common::Cluster, killed: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.inner.stream_leader(JUMPS_STREAM);
        if let Some(i) = leader {
            let name = mltrader_nats::testing::TestCluster::server_name(i);
            if name != killed {
                return name;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new leader 30 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times the leader test kills the stream's leader: `MLTRADER_PAIRS_KILLS` (default
/// 1; each killed server is restarted before the next kill).
fn leader_test_kills() -> u32 {
    std::env::var("MLTRADER_PAIRS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The leader test's jumps per pair.
fn leader_test_jumps() -> u64 {
    std::env::var("MLTRADER_PAIRS_JUMPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

#[test]
fn every_jump_is_read_once_in_order_while_the_jumps_stream_leader_is_killed() {
    let Some(cluster) = common::Cluster::start_own() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let g = galaxy();
    let jumps = leader_test_jumps();
    // Three pairs: two origins into one destination, and one the other way.
    let (a, b) = lane(&g, 0);
    let c = *g
        .neighbours(b)
        .iter()
        .find(|&&s| s != a)
        .expect("b has two lanes");
    let pairs = [(a, b), (c, b), (b, a)];
    let writer = Arc::new(open(&cluster.connect("pairs-writer"), &g, "writer"));
    let reader_links = open(&cluster.connect("pairs-reader"), &g, "reader");
    runtime().block_on(async {
        for origin in [a, b, c] {
            writer.fence_outgoing(origin, 1).await.unwrap();
        }
        let mut into_b = reader(&reader_links, b, BTreeMap::new());
        let mut into_a = reader(&reader_links, a, BTreeMap::new());
        let kills = leader_test_kills();
        let started = Instant::now();
        let publishers: Vec<_> = pairs
            .iter()
            .map(|&(from, to)| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let mut longest = Duration::ZERO;
                    let mut unavailable = 0;
                    for x in 1..=jumps {
                        let one = Instant::now();
                        // The caller's rule: Unavailable means unknown, and a republish is safe.
                        while let Err(e) = writer.publish(1, jump(InstanceId::primary(from), to, x)).await {
                            assert!(matches!(e, LinkError::Unavailable(_)), "{e}");
                            unavailable += 1;
                        }
                        longest = longest.max(one.elapsed());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    (longest, unavailable)
                })
            })
            .collect();
        for kill in 1..=kills {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let leader = cluster.leader_of(JUMPS_STREAM).await;
            let killed_at = started.elapsed();
            let (killer, to_kill) = (cluster.clone(), leader.clone());
            tokio::task::spawn_blocking(move || killer.kill(&to_kill))
                .await
                .unwrap();
            let new_leader = new_leader(&cluster, &leader).await;
            println!(
                "kill {kill}: {leader}, the leader of {JUMPS_STREAM}, at {killed_at:?}; {new_leader} leads {:?} after the kill",
                started.elapsed() - killed_at
            );
            if kill < kills {
                // Two servers of three down would stop the stream: the killed one comes back
                // before the next kill.
                let restarter = cluster.clone();
                tokio::task::spawn_blocking(move || restarter.restart_dead())
                    .await
                    .unwrap();
            }
        }
        for (i, p) in publishers.into_iter().enumerate() {
            let (longest, unavailable) = p.await.unwrap();
            println!("pair {i}: longest publish {longest:?}, {unavailable} unavailable");
        }
        let published = started.elapsed();
        let got_b = ok(next_n(&mut into_b, 2 * jumps as usize).await);
        let got_a = ok(next_n(&mut into_a, jumps as usize).await);
        nothing_more(&mut into_b).await;
        nothing_more(&mut into_a).await;
        println!(
            "{} jumps on {} pairs published in {published:?}, all read {:?} after the start; writer {:?}; reader {:?}",
            jumps * pairs.len() as u64,
            pairs.len(),
            started.elapsed(),
            writer.stats(),
            reader_links.stats()
        );
        for (from, got) in [(a, &got_b), (c, &got_b), (b, &got_a)] {
            let read: Vec<&Arrived> = got.iter().filter(|x| x.jump.from.system == from).collect();
            let numbers: Vec<u64> = read.iter().map(|x| x.jump.xfer.0).collect();
            assert_eq!(
                numbers,
                (1..=jumps).collect::<Vec<_>>(),
                "from {}: each jump once, in order",
                g.slug(from)
            );
            assert!(read.windows(2).all(|w| w[0].at < w[1].at), "positions grow");
        }
        // Nothing stored twice either, and no message against the fence marks.
        for &(from, to) in &pairs {
            let stored = messages(&cluster, &writer.subject(from, to)).await;
            assert_eq!(jump_numbers(&stored), (1..=jumps).collect::<Vec<_>>());
            writer.check_fencing(from, to).unwrap();
        }
    });
}

/// The rate test's pairs and jumps per pair: `MLTRADER_PAIRS_RATE=PAIRSxJUMPS` (default 4x25).
fn rate_test_size() -> (usize, u64) {
    let spec = std::env::var("MLTRADER_PAIRS_RATE").unwrap_or_else(|_| "4x25".into());
    let (pairs, jumps) = spec
        .split_once('x')
        .and_then(|(p, j)| Some((p.parse().ok()?, j.parse().ok()?)))
        .unwrap_or_else(|| panic!("MLTRADER_PAIRS_RATE={spec}: PAIRSxJUMPS, as 4x25"));
    (pairs, jumps)
}

/// The `q` quantile of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn pairs_publishing_at_once_are_read_once_in_order_and_say_how_fast() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = galaxy();
    let (pairs, jumps) = rate_test_size();
    let lanes: Vec<(SystemId, SystemId)> = disjoint_lanes(&g)
        .into_iter()
        .skip(FIRST_RATE_LANE)
        .take(pairs)
        .collect();
    assert_eq!(
        lanes.len(),
        pairs,
        "the galaxy has {} free disjoint lanes",
        lanes.len()
    );
    let writer = Arc::new(open(&cluster.connect("pairs-rate-w"), &g, "w"));
    let reader_links = open(&cluster.connect("pairs-rate-r"), &g, "r");
    runtime().block_on(async {
        for &(from, _) in &lanes {
            writer.fence_outgoing(from, 1).await.unwrap();
        }
        let mut readers: Vec<_> = lanes
            .iter()
            .map(|&(_, to)| reader(&reader_links, to, BTreeMap::new()))
            .collect();
        let started = Instant::now();
        let publishers: Vec<_> = lanes
            .iter()
            .map(|&(from, to)| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    for x in 1..=jumps {
                        let one = Instant::now();
                        writer
                            .publish(1, jump(InstanceId::primary(from), to, x))
                            .await
                            .unwrap();
                        took.push(one.elapsed());
                    }
                    took
                })
            })
            .collect();
        let mut took = Vec::new();
        for p in publishers {
            took.extend(p.await.unwrap());
        }
        let published = started.elapsed();
        for (r, &(from, _)) in readers.iter_mut().zip(&lanes) {
            let numbers: Vec<u64> = ok(next_n(r, jumps as usize).await)
                .iter()
                .map(|a| {
                    assert_eq!(a.jump.from.system, from);
                    a.jump.xfer.0
                })
                .collect();
            assert_eq!(numbers, (1..=jumps).collect::<Vec<_>>(), "once, in order");
        }
        let read = started.elapsed();
        for r in readers.iter_mut() {
            nothing_more(r).await;
        }
        took.sort();
        let total = pairs as u64 * jumps;
        println!(
            "{total} jumps on {pairs} pairs (one publish in flight each): published in {published:?} ({:.0} jumps/s), all read {:?} after the start; publish p50 {:?}, p99 {:?}, max {:?}",
            total as f64 / published.as_secs_f64(),
            read,
            quantile(&took, 0.5),
            quantile(&took, 0.99),
            took.last().unwrap()
        );
    });
}

/// CPU seconds (user + system) of process `pid` so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ on Linux
}

/// The three servers' CPU seconds over `window`.
fn servers_cpu_over(cluster: &common::Cluster, window: Duration) -> f64 {
    let pids: Vec<u32> = (1..=3)
        .map(|i| cluster.inner.server_pid(i).expect("a running server"))
        .collect();
    let before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    std::thread::sleep(window);
    pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - before
}

/// By hand (ignored: it measures, it guards nothing): what readers of every pair subject of
/// the galaxy cost the servers while no jump is published, against the same cluster with none.
/// `MLTRADER_PAIRS_IDLE_S` sets each window (default 20 s).
#[test]
#[ignore]
fn idle_readers_of_every_pair_cost_the_servers() {
    let Some(cluster) = common::Cluster::start_own() else {
        return;
    };
    let g = galaxy();
    let window = Duration::from_secs(
        std::env::var("MLTRADER_PAIRS_IDLE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let links = open(&cluster.connect("pairs-idle"), &g, "idle");
    std::thread::sleep(Duration::from_secs(2));
    let quiet = servers_cpu_over(&cluster, window);
    let mut receivers = Vec::new();
    for to in g.ids() {
        receivers.push(reader(&links, to, BTreeMap::new()));
    }
    let pairs: usize = g
        .ids()
        .map(|s| mltrader_nats::pairs::pair_ends_towards(&g, s).len())
        .sum();
    std::thread::sleep(Duration::from_secs(5));
    let client_before = cpu_seconds(std::process::id());
    let reading = servers_cpu_over(&cluster, window);
    let client = cpu_seconds(std::process::id()) - client_before;
    let stats = links.stats();
    println!(
        "{pairs} pairs read, idle: the three servers used {quiet:.2} CPU s in {window:?} without readers, {reading:.2} with ({:.1}% of one core more); this client {client:.2} CPU s; consumers {}, watchdog checks {}, stalls {}",
        (reading - quiet) / window.as_secs_f64() * 100.0,
        stats.consumers.load(std::sync::atomic::Ordering::Relaxed),
        stats.stall_checks.load(std::sync::atomic::Ordering::Relaxed),
        stats.stalls.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(receivers);
}
