//! News between nodes over core NATS (`mltrader_nats::news::NatsNews`, mesh's
//! `spread_news::News`) against a real three-node cluster: what one carrier tells reaches
//! another once and never comes back to its teller; news that does not fit the galaxy is
//! refused and counted; and two meshes as two nodes of a spread galaxy, each attached to its
//! own carrier, see each other's systems in their economy views and market gossip (with real
//! ages) and each other's units' events in their feeds, once.
//!
//! The tests run one at a time (they share the cluster, and every carrier hears every news
//! subject). Small by default (a few seconds after the cluster starts); `MLTRADER_NEWS_EVENTS=N` sets
//! how many events the first test tells (default 200).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mesh::directory::Place;
use mesh::feed::{FeedEvent, FeedEventKind};
use mesh::links::{Links, MemoryLinks};
use mesh::price_sync::{PriceView, Published};
use mesh::spread_news::{Heard, News};
use mesh::{Mesh, MeshConfig};
use mltrader_nats::news::{events_subject, gossip_subject, NatsNews, NewsStats};
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::GOOD_COUNT;
use sim::ids::Tick;
use sim::instance::InstanceId;
use sim::market::PriceReport;
use store::backend::Storage;
use store::datadir::DataDir;
use store::seq::Seq;
use tokio::sync::{broadcast, mpsc};

/// The tests of this binary share a cluster and every node hears every news subject: one
/// test at a time, so that none hears another's news.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a test waits for news that should come.
const WAIT: Duration = Duration::from_secs(15);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn events_to_tell() -> u64 {
    std::env::var("MLTRADER_NEWS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn joined(system: SystemId, seq: u64, player: &str) -> FeedEvent {
    FeedEvent {
        system,
        instance: 1,
        seq: Seq(seq),
        t: Tick(seq),
        kind: FeedEventKind::Joined {
            player: player.into(),
        },
    }
}

fn report(tick: u64) -> PriceReport {
    PriceReport {
        tick,
        prices_cr: [tick + 1; GOOD_COUNT],
    }
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// Tells `probe` events through `teller` every 50 ms until `hearer` hears one (interest
/// travels between the cluster's servers a moment after a subscription), then empties
/// `hearer` of what came meanwhile.
async fn until_heard(
    teller: &NatsNews,
    hearer: &mut mpsc::Receiver<Heard>,
    system: SystemId,
    player: &str,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seq = 1;
    loop {
        teller.event(&Arc::new(joined(system, seq, player)));
        seq += 1;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), hearer.recv()).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing heard in {WAIT:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while hearer.try_recv().is_ok() {}
}

#[test]
fn news_reaches_every_other_node_once_and_never_its_teller() {
    let _serial = one_at_a_time();
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = Arc::new(Galaxy::default_galaxy());
    let home = g.home();
    let n0 = g.neighbours(home)[0];
    runtime().block_on(async {
        let a = NatsNews::start(&cluster.connect("news-a"), g.clone());
        let b = NatsNews::start(&cluster.connect("news-b"), g.clone());
        let (to_a, mut heard_a) = mpsc::channel(8192);
        let (to_b, mut heard_b) = mpsc::channel(8192);
        a.listen(to_a).await.unwrap();
        b.listen(to_b).await.unwrap();
        until_heard(&a, &mut heard_b, home, "probe-a").await;
        until_heard(&b, &mut heard_a, home, "probe-b").await;
        let sent_before = get(&a.stats().sent);
        let received_before = get(&b.stats().received);

        // a tells events, one gossip and one report; b hears each once, a none of them.
        let n = events_to_tell();
        for seq in 0..n {
            a.event(&Arc::new(joined(home, 1_000 + seq, "ann")));
        }
        let mut view = PriceView::new();
        view.record(home, report(5), 1_000);
        view.record(n0, report(6), 2_000);
        a.gossip(home, n0, &Arc::new(view.clone()));
        let published = Published {
            system: home,
            report: report(7),
            published_ms: 3_000,
        };
        a.prices(&published);

        let mut events = Vec::new();
        let (mut gossip, mut prices) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + WAIT;
        while (events.len() as u64) < n || gossip.is_empty() || prices.is_empty() {
            match tokio::time::timeout_at(deadline, heard_b.recv()).await {
                Ok(Some(Heard::Event(e))) => events.push(e),
                Ok(Some(Heard::Gossip { from, to, view })) => gossip.push((from, to, view)),
                Ok(Some(Heard::Prices(p))) => prices.push(p),
                Ok(None) => panic!("b's sink closed"),
                Err(_) => panic!(
                    "b heard {} of {n} events, {} gossip, {} reports in {WAIT:?}",
                    events.len(),
                    gossip.len(),
                    prices.len()
                ),
            }
        }
        let seqs: Vec<u64> = events.iter().map(|e| e.seq.0).collect();
        assert_eq!(
            seqs,
            (1_000..1_000 + n).collect::<Vec<_>>(),
            "each once, in order"
        );
        assert_eq!(gossip, vec![(home, n0, view)]);
        assert_eq!(prices, vec![published]);
        // Nothing more on b, and nothing of its own on a.
        let more = tokio::time::timeout(Duration::from_millis(500), heard_b.recv()).await;
        assert!(more.is_err(), "b heard more: {more:?}");
        assert!(heard_a.try_recv().is_err(), "a heard its own news");
        assert_eq!(get(&a.stats().sent) - sent_before, n + 2);
        assert_eq!(get(&b.stats().received) - received_before, n + 2);
        assert!(get(&a.stats().own_skipped) >= n + 2);
        let zero = |s: &NewsStats| {
            (
                get(&s.malformed),
                get(&s.dropped_outbox_full),
                get(&s.dropped_sink_full),
                get(&s.send_failed),
            )
        };
        assert_eq!(zero(a.stats()), (0, 0, 0, 0));
        assert_eq!(zero(b.stats()), (0, 0, 0, 0));
    });
}

#[test]
fn news_that_does_not_fit_the_galaxy_is_refused_and_counted() {
    let _serial = one_at_a_time();
    let Some(cluster) = common::shared() else {
        return;
    };
    let g = Arc::new(Galaxy::default_galaxy());
    let home = g.home();
    let far = g
        .ids()
        .find(|&s| s != home && !g.has_lane(s, home))
        .unwrap();
    runtime().block_on(async {
        let teller = NatsNews::start(&cluster.connect("news-c"), g.clone());
        let hearer = NatsNews::start(&cluster.connect("news-d"), g.clone());
        let (sink, mut heard) = mpsc::channel(1024);
        hearer.listen(sink).await.unwrap();
        until_heard(&teller, &mut heard, home, "probe-c").await;
        let raw = cluster.raw().await;
        let client = raw.client();
        // Not JSON; gossip between systems with no lane; an event on another system's subject.
        client
            .publish(events_subject(&g, home), "{not json".into())
            .await
            .unwrap();
        let gossip = format!(r#"{{"from":"{}","reports":[]}}"#, g.slug(home));
        client
            .publish(gossip_subject(&g, far), gossip.into())
            .await
            .unwrap();
        let elsewhere = serde_json::to_vec(&joined(far, 1, "eve")).unwrap();
        client
            .publish(events_subject(&g, home), elsewhere.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        // Then a good one, from the same connection (so after them): only it is heard.
        let good = serde_json::to_vec(&joined(home, 77, "bob")).unwrap();
        client
            .publish(events_subject(&g, home), good.into())
            .await
            .unwrap();
        let got = tokio::time::timeout(WAIT, heard.recv()).await.unwrap();
        assert_eq!(got, Some(Heard::Event(joined(home, 77, "bob"))));
        assert_eq!(get(&hearer.stats().malformed), 3);
        drop(teller);
    });
}

/// A node's mesh for the meshes test: 100 Hz, one tick a light year, fuel enough.
fn config() -> MeshConfig {
    let mut c = MeshConfig {
        tick_hz: 100,
        snapshot_every_records: 1_000,
        ..MeshConfig::default()
    };
    c.rules.ticks_per_ly = 1;
    c.rules.starting_fuel = 1_000_000;
    c.rules.fuel_capacity = 1_000_000;
    c
}

/// Every event of `player` heard on `feed` within `settle`.
async fn events_of(
    feed: &mut broadcast::Receiver<Arc<FeedEvent>>,
    player: &str,
    settle: Duration,
) -> Vec<FeedEvent> {
    tokio::time::sleep(settle).await;
    let mut out = Vec::new();
    while let Ok(e) = feed.try_recv() {
        if e.kind.player() == player {
            out.push((*e).clone());
        }
    }
    out
}

#[test]
fn two_nodes_see_each_others_systems_and_events_over_nats() {
    let _serial = one_at_a_time();
    let Some(cluster) = common::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let galaxy = Galaxy::default_galaxy();
    let g = Arc::new(galaxy.clone());
    let home = g.home();
    let next = g.neighbours(home)[0];
    let storage = Storage::files(&DataDir::at(dir.path().join("store")));
    runtime().block_on(async {
        let links: Arc<dyn Links> = MemoryLinks::new();
        let mut nodes = Vec::new();
        let mut carriers = Vec::new();
        for name in ["news-m1", "news-m2"] {
            let own = DataDir::at(dir.path().join(name));
            let mesh = Mesh::start_node(
                storage.clone(),
                own,
                galaxy.clone(),
                config(),
                links.clone(),
            )
            .unwrap();
            let news = NatsNews::start(&cluster.connect(name), g.clone());
            mesh.attach_news(news.clone()).await.unwrap();
            nodes.push(mesh);
            carriers.push(news);
        }
        let (a, b) = (&nodes[0], &nodes[1]);
        a.start_unit(home, storage.clone(), 1).await.unwrap();
        b.start_unit(next, storage.clone(), 1).await.unwrap();
        let (mut feed_a, mut feed_b) = (a.events(), b.events());

        // Each node's economy view has both systems, each with a real age.
        let both: BTreeSet<String> = [home, next].iter().map(|s| g.slug(*s).into()).collect();
        for (name, node) in [("a", a), ("b", b)] {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let view = node.economy();
                let seen: BTreeSet<String> = view.systems.iter().map(|h| h.slug.clone()).collect();
                if seen == both {
                    for h in &view.systems {
                        assert!(
                            h.age_ms < 5_000,
                            "{name}: {} is {} ms old",
                            h.slug,
                            h.age_ms
                        );
                    }
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {name}'s economy view has {seen:?}, not {both:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Each system's market heard its neighbour on the other node (gossip).
        for (node, system, other) in [(a, home, next), (b, next, home)] {
            let deadline = tokio::time::Instant::now() + WAIT;
            while !node
                .market(system)
                .await
                .unwrap()
                .heard
                .iter()
                .any(|h| h.slug == g.slug(other) && h.age_ms < 5_000)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} never heard {}",
                    g.slug(system),
                    g.slug(other)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // ann joins on a and jumps to b's system: both feeds hear joined, departed, arrived,
        // each once.
        a.join("ann", "k").await.unwrap();
        a.jump("ann", next).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while b.place("ann") != Some(Place::In(InstanceId::primary(next))) {
            assert!(tokio::time::Instant::now() < deadline, "ann never landed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kinds = |events: &[FeedEvent]| -> Vec<(String, SystemId)> {
            events
                .iter()
                .map(|e| {
                    let json = serde_json::to_value(&e.kind).unwrap();
                    (json["type"].as_str().unwrap().to_string(), e.system)
                })
                .collect()
        };
        let expected: Vec<(String, SystemId)> = vec![
            ("joined".into(), home),
            ("departed".into(), home),
            ("arrived".into(), next),
        ];
        let on_a = events_of(&mut feed_a, "ann", Duration::from_secs(1)).await;
        let on_b = events_of(&mut feed_b, "ann", Duration::ZERO).await;
        assert_eq!(kinds(&on_a), expected, "a's feed: {on_a:?}");
        assert_eq!(kinds(&on_b), expected, "b's feed: {on_b:?}");
        assert_eq!(on_a, on_b, "the same records on both nodes");
        let (ca, cb) = (a.news_counts().unwrap(), b.news_counts().unwrap());
        println!("node a took in {ca:?}; node b {cb:?}");
        for c in &carriers {
            let s = c.stats();
            println!(
                "carrier {}: sent {}, received {}, own skipped {}, malformed {}, dropped {} + {}",
                c.origin(),
                get(&s.sent),
                get(&s.received),
                get(&s.own_skipped),
                get(&s.malformed),
                get(&s.dropped_outbox_full),
                get(&s.dropped_sink_full)
            );
            assert_eq!(get(&s.malformed), 0);
        }
        assert!(ca.gossip_in > 0 && cb.gossip_in > 0);
        a.stop().await.unwrap();
        b.stop().await.unwrap();
    });
}
