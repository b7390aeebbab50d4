//! Nodes announcing themselves in the members' bucket (`mltrader_nats::members`), judged live or
//! gone by an observer's `mesh::protocol::members::Roster` as a node will judge them, against a
//! real three-node cluster: both members listed, a clean leave gone at once, a member whose
//! renewals stop gone after a period, and nobody judged gone while the bucket's stream leader
//! is killed and another is elected.
//!
//! Small by default (a period of 2 s; about 30 s in all). `MLTRADER_MEMBERS_PERIOD_MS` sets
//! the period, `MLTRADER_MEMBERS_ELECTIONS` how many leaders the election test kills in turn.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh::protocol::deal;
use mesh::protocol::members::{Roster, Seen};
use mltrader_nats::members::{Announcement, Members, Standing, NODES_BUCKET};
use mltrader_nats::Nats;

/// The members' period in these tests.
fn period_ms() -> u64 {
    std::env::var("MLTRADER_MEMBERS_PERIOD_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

/// How often the observer polls: as often as a member renews.
fn poll_every() -> Duration {
    Duration::from_millis(period_ms() / 4)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn announce(nats: &Nats, bucket: &str, url: &str) -> Announcement {
    let members = Members::open(nats, bucket, Duration::from_millis(period_ms()), 3).unwrap();
    members.announce(url, now_ms()).unwrap()
}

/// An observer: polls the bucket and judges with a roster, as a node does.
struct Observer {
    members: Members,
    roster: Roster,
    start: Instant,
    answered: u64,
    unanswered: u64,
    /// The revisions of the last answered poll, and when one of them last changed.
    last_revisions: BTreeMap<String, u64>,
    last_write_seen: Option<Duration>,
    /// The longest time answered polls saw no key written (every member's renewals failing
    /// while the store answered reads).
    longest_shared_silence: Duration,
}

/// What one poll of an observer saw.
struct PollSeen {
    /// The live members by name, with their URLs (None: the poll got no answer).
    live: Option<BTreeMap<String, String>>,
    at: Duration,
}

impl Observer {
    fn new(nats: &Nats, bucket: &str) -> Observer {
        Observer {
            members: Members::open(nats, bucket, Duration::from_millis(period_ms()), 3).unwrap(),
            roster: Roster::new(period_ms()),
            start: Instant::now(),
            answered: 0,
            unanswered: 0,
            last_revisions: BTreeMap::new(),
            last_write_seen: None,
            longest_shared_silence: Duration::ZERO,
        }
    }

    fn observe(&mut self) -> PollSeen {
        let polled = self.members.poll();
        // The time the poll returned (as mesh::protocol::lease::Watch takes it): a revision
        // is counted from then, the later of the two, so no silence is counted too soon.
        let at = self.start.elapsed();
        let now = at.as_millis() as u64;
        let live = match polled {
            Ok(listing) => {
                assert!(listing.malformed.is_empty(), "{:?}", listing.malformed);
                self.answered += 1;
                if std::env::var_os("MLTRADER_MEMBERS_TRACE").is_some() {
                    let revisions: Vec<(&String, u64)> = listing
                        .members
                        .iter()
                        .map(|(n, m)| (n, m.revision))
                        .collect();
                    eprintln!("{:>6} ms: answered {revisions:?}", at.as_millis());
                }
                let revisions: BTreeMap<String, u64> = listing
                    .members
                    .iter()
                    .map(|(n, m)| (n.clone(), m.revision))
                    .collect();
                if revisions != self.last_revisions {
                    self.last_write_seen = Some(at);
                    self.last_revisions = revisions;
                } else if let Some(last) = self.last_write_seen {
                    self.longest_shared_silence = self.longest_shared_silence.max(at - last);
                }
                let seen = listing
                    .members
                    .iter()
                    .map(|(node, m)| {
                        (
                            node.clone(),
                            Seen {
                                revision: m.revision,
                            },
                        )
                    })
                    .collect();
                self.roster.answered(seen, now);
                let live = self.roster.live(now);
                Some(
                    live.into_iter()
                        .map(|node| (node.to_string(), listing.members[node].url.clone()))
                        .collect(),
                )
            }
            Err(e) => {
                eprintln!("{:>6} ms: poll unanswered: {e}", at.as_millis());
                self.unanswered += 1;
                self.roster.unanswered();
                None
            }
        };
        PollSeen { live, at }
    }

    /// Polls until the live members are `names` (or panics after `within`).
    fn until_live(&mut self, names: &[&str], within: Duration) -> Duration {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.observe();
            if let Some(live) = &seen.live {
                if live.keys().map(String::as_str).eq(names.iter().copied()) {
                    return seen.at;
                }
            }
            assert!(
                Instant::now() < deadline,
                "live members never became {names:?} within {within:?}; last seen {:?}",
                seen.live
            );
            std::thread::sleep(poll_every());
        }
    }
}

#[test]
fn two_members_are_listed_and_one_that_leaves_cleanly_is_gone_at_once() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let bucket = "mlt_nodes_leave";
    let alpha = announce(&cluster.connect("alpha"), bucket, "http://127.0.0.1:1001");
    let beta = announce(&cluster.connect("beta"), bucket, "http://127.0.0.1:1002");
    let mut observer = Observer::new(&cluster.connect("observer"), bucket);
    let seen = observer.observe();
    let live = seen.live.expect("the store answers");
    assert_eq!(
        live,
        BTreeMap::from([
            ("alpha".to_string(), "http://127.0.0.1:1001".to_string()),
            ("beta".to_string(), "http://127.0.0.1:1002".to_string()),
        ])
    );
    // Both renew: over two periods, both stay live and their revisions grow.
    let first = (alpha.standing(), beta.standing());
    for _ in 0..8 {
        std::thread::sleep(poll_every());
        let live = observer.observe().live.expect("the store answers");
        assert_eq!(live.len(), 2, "{live:?}");
    }
    assert_ne!(alpha.standing(), first.0, "alpha renewed");
    assert_ne!(beta.standing(), first.1, "beta renewed");
    assert!(matches!(alpha.standing(), Standing::Renewed { .. }));

    let left = Instant::now();
    alpha.leave().unwrap();
    let live = observer.observe().live.expect("the store answers");
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        ["beta"],
        "a clean leave is seen at the next poll"
    );
    println!(
        "alpha left; the next poll saw it gone {} ms later",
        left.elapsed().as_millis()
    );
    drop(beta);
}

#[test]
fn a_member_whose_renewals_stop_is_gone_after_a_period() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let bucket = "mlt_nodes_drop";
    let alpha = announce(&cluster.connect("alpha"), bucket, "http://127.0.0.1:2001");
    let beta = announce(&cluster.connect("beta"), bucket, "http://127.0.0.1:2002");
    let mut observer = Observer::new(&cluster.connect("observer"), bucket);
    observer.until_live(&["alpha", "beta"], Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(period_ms()));
    assert_eq!(observer.observe().live.unwrap().len(), 2);

    let units: Vec<String> = (0..50)
        .map(|i| deal::unit_of_system(&format!("s{i}")))
        .collect();
    let before = ["alpha", "beta"];

    // beta's renewals stop (its process died): its key stays, unchanged.
    let dropped_at = observer.start.elapsed();
    drop(beta);
    let gone_at = observer.until_live(&["alpha"], Duration::from_millis(4 * period_ms()));
    let after = gone_at - dropped_at;
    println!(
        "beta's renewals stopped; judged gone {} ms later (period {} ms)",
        after.as_millis(),
        period_ms()
    );
    // Its last renewal was at most a quarter period before the drop, and the observer saw it
    // at most a poll later: gone no sooner than about 3/4 of a period after the drop.
    assert!(
        after >= Duration::from_millis(period_ms() * 3 / 4 - 50),
        "gone too soon: {after:?}"
    );
    assert!(matches!(alpha.standing(), Standing::Renewed { .. }));
    // Dealt again over the live members: only beta's units move, all to alpha.
    let live = observer.observe().live.unwrap();
    let after: Vec<&str> = live.keys().map(String::as_str).collect();
    let moved = deal::moves(&before, &after, &units);
    assert_eq!(moved.len(), deal::deal(&units, &before)["beta"].len());
    assert!(moved
        .iter()
        .all(|m| m.from.as_deref() == Some("beta") && m.to.as_deref() == Some("alpha")));
    println!(
        "dealt again: {} of {} units moved from beta to alpha",
        moved.len(),
        units.len()
    );
    alpha.leave().unwrap();
}

#[test]
fn no_member_is_judged_gone_while_the_buckets_leader_is_elected() {
    // A cluster of its own: this test kills servers.
    let Some(cluster) = common::Cluster::start_own() else {
        return;
    };
    let elections: usize = std::env::var("MLTRADER_MEMBERS_ELECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let stream = format!("KV_{NODES_BUCKET}");
    let alpha = announce(
        &cluster.connect("alpha"),
        NODES_BUCKET,
        "http://127.0.0.1:3001",
    );
    let beta = announce(
        &cluster.connect("beta"),
        NODES_BUCKET,
        "http://127.0.0.1:3002",
    );
    let mut observer = Observer::new(&cluster.connect("observer"), NODES_BUCKET);
    observer.until_live(&["alpha", "beta"], Duration::from_secs(10));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    for round in 1..=elections {
        let leader = runtime.block_on(cluster.leader_of(&stream));
        let killed_at = observer.start.elapsed();
        println!("round {round}: SIGKILL of {leader}, the leader of {stream}");
        cluster.kill(&leader);
        // Watch until a new leader has been answering for three periods.
        let mut answered_since: Option<Duration> = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered_since.is_none_or(|since| {
            observer.start.elapsed() - since < Duration::from_millis(3 * period_ms())
        }) {
            let seen = observer.observe();
            match &seen.live {
                Some(live) => {
                    assert_eq!(
                        live.keys().collect::<Vec<_>>(),
                        ["alpha", "beta"],
                        "{} ms after the kill, a member was judged gone (alpha {:?}, {} failed renewals, the last: {:?}; beta {:?}, {} failed, the last: {:?})",
                        (seen.at - killed_at).as_millis(),
                        alpha.standing(),
                        alpha.failed_renewals(),
                        alpha.last_failure(),
                        beta.standing(),
                        beta.failed_renewals(),
                        beta.last_failure(),
                    );
                    answered_since.get_or_insert(seen.at);
                }
                None => answered_since = None,
            }
            assert!(Instant::now() < deadline, "the bucket never answered again");
            std::thread::sleep(poll_every());
        }
        println!(
            "round {round}: polls answered {}, unanswered {}; the longest time answered polls saw no key written: {} ms; alpha's failed renewals {}, beta's {}; nobody judged gone",
            observer.answered,
            observer.unanswered,
            observer.longest_shared_silence.as_millis(),
            alpha.failed_renewals(),
            beta.failed_renewals()
        );
        cluster.restart_dead();
    }
    // The election was seen: polls went unanswered, or answered polls saw nobody's renewal
    // get through for a whole period (the case a count over answered polls alone gets wrong).
    assert!(
        observer.unanswered > 0
            || observer.longest_shared_silence >= Duration::from_millis(period_ms()),
        "no poll went unanswered and writes never stalled: the election was not seen, so this test proved nothing"
    );
    assert!(matches!(alpha.standing(), Standing::Renewed { .. }));
    assert!(matches!(beta.standing(), Standing::Renewed { .. }));
    alpha.leave().unwrap();
    beta.leave().unwrap();
}

#[test]
fn a_name_announced_again_replaces_the_first_and_a_foreign_value_is_never_a_member() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let bucket = "mlt_nodes_twice";
    let first = announce(&cluster.connect("alpha"), bucket, "http://127.0.0.1:4001");
    // A second process under the same name (a restart while the first still runs).
    let second = announce(&cluster.connect("alpha"), bucket, "http://127.0.0.1:4002");
    let deadline = Instant::now() + Duration::from_millis(4 * period_ms());
    while !matches!(first.standing(), Standing::Replaced { .. }) {
        assert!(
            Instant::now() < deadline,
            "the first announcement was never told it was replaced: {:?}",
            first.standing()
        );
        std::thread::sleep(poll_every());
    }
    // The second renews on; the first renews no more and its leave deletes nothing.
    std::thread::sleep(Duration::from_millis(period_ms() / 2));
    assert!(matches!(second.standing(), Standing::Renewed { .. }));
    let refused = first.leave().unwrap_err().to_string();
    assert!(refused.contains("written by another"), "{refused}");

    // A key that is not an announcement, written by something else.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let js = cluster.raw().await;
        let kv = js.get_key_value(bucket).await.unwrap();
        kv.put("intruder", "hello".into()).await.unwrap();
    });
    let observer = Members::open(
        &cluster.connect("observer"),
        bucket,
        Duration::from_millis(period_ms()),
        3,
    )
    .unwrap();
    let listing = observer.poll().unwrap();
    assert_eq!(
        listing.members.keys().collect::<Vec<_>>(),
        ["alpha"],
        "{listing:?}"
    );
    assert_eq!(listing.members["alpha"].url, "http://127.0.0.1:4002");
    assert_eq!(listing.malformed.len(), 1, "{listing:?}");
    assert_eq!(listing.malformed[0].key, "intruder");
    assert_eq!(listing.malformed[0].reason, "no url=<api url>");
    second.leave().unwrap();
    assert!(observer.poll().unwrap().members.is_empty());
}

#[test]
fn a_poll_lists_every_member_of_a_larger_galaxy_and_says_how_long_it_took() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let keys: usize = std::env::var("MLTRADER_MEMBERS_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let bucket = "mlt_nodes_many";
    let observer = Members::open(
        &cluster.connect("observer"),
        bucket,
        Duration::from_millis(period_ms()),
        3,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The announcements of `keys` nodes, as Members::announce writes them.
    runtime.block_on(async {
        let js = cluster.raw().await;
        let kv = js.get_key_value(bucket).await.unwrap();
        for i in 0..keys {
            let value = format!("url=http://10.0.0.{}:7878 started={}", i % 250, now_ms());
            kv.put(format!("node-{i}"), value.into()).await.unwrap();
        }
    });
    let mut took = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let listing = observer.poll().unwrap();
        took.push(start.elapsed());
        assert_eq!(listing.members.len(), keys);
        assert!(listing.malformed.is_empty());
    }
    took.sort();
    println!(
        "a poll of {keys} members: p50 {} ms, max {} ms (20 polls)",
        took[took.len() / 2].as_millis(),
        took[took.len() - 1].as_millis()
    );
    // The polls' consumers do not linger at the bucket's leader.
    let consumers = || {
        runtime.block_on(async {
            let js = cluster.raw().await;
            let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
            stream.info().await.unwrap().state.consumer_count
        })
    };
    assert_eq!(consumers(), 0, "every poll deletes its consumer");
}

#[test]
fn a_renewal_stored_whose_answer_was_lost_is_adopted_by_the_renewals_and_by_leave() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let bucket = "mlt_nodes_lost_answer";
    let period = Duration::from_millis(period_ms());
    let (url, started) = ("http://127.0.0.1:5001", now_ms());
    let members = Members::open(&cluster.connect("alpha"), bucket, period, 3).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kv = runtime.block_on(async {
        let js = cluster.raw().await;
        js.get_key_value(bucket).await.unwrap()
    });
    // Writes alpha's own value again, at the revision a poll finds (as a renewal of alpha's
    // whose answer was lost): returns the revision written.
    let write_own = || {
        let value = format!("url={url} started={started}");
        loop {
            let revision = members.poll().unwrap().members["alpha"].revision;
            let written = runtime.block_on(kv.update("alpha", value.clone().into(), revision));
            if let Ok(written) = written {
                return written;
            }
        }
    };

    let announcement = members.announce(url, started).unwrap();
    let written = write_own();
    std::thread::sleep(period);
    match announcement.standing() {
        Standing::Renewed { revision } => assert!(revision > written, "renewed past it"),
        replaced => panic!("its own write taken for another's: {replaced:?}"),
    }

    let written = write_own();
    let left = announcement.leave();
    assert!(
        left.is_ok(),
        "leave after its own write at {written}: {left:?}"
    );
    assert!(!members.poll().unwrap().members.contains_key("alpha"));
}

#[test]
fn a_node_name_that_is_no_key_or_a_url_with_a_space_is_refused_saying_so() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let bucket = "mlt_nodes_bad";
    let period = Duration::from_millis(period_ms());
    let bad_name = Members::open(&cluster.connect("node a"), bucket, period, 3).unwrap();
    let refused = bad_name.announce("http://127.0.0.1:6001", now_ms()).err();
    let refused = refused.expect("a name with a space is refused").to_string();
    assert!(
        refused.contains("member node a: a node's name is a KV key"),
        "{refused}"
    );
    let good = Members::open(&cluster.connect("alpha"), bucket, period, 3).unwrap();
    let refused = good.announce("http://127.0.0.1:6001 x", now_ms()).err();
    let refused = refused.expect("a URL with a space is refused").to_string();
    assert!(refused.contains("is empty or holds a space"), "{refused}");
    assert!(
        good.poll().unwrap().members.is_empty(),
        "nothing was written"
    );
}
