//! The operator's view of a galaxy spread over two nodes (`serve --nats --spread`, three
//! nats-servers): each node's `GET /v1/map` names the node that runs each system, as the
//! leases say, both nodes each for the systems it serves; and `GET /metrics` of a `--nats` node
//! parses as Prometheus text (`prometheus-parse`) with its counters moved by a join and a jump
//! made through it. Its economy's page says it cannot read the logs in JetStream (501 for the
//! JSON).
//!
//! Small: two nodes, one player, about half a minute. Needs nats-server
//! (scripts/nats-install.sh); fails without it under `MLTRADER_NATS_REQUIRED=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::Node;
use nats::testing::TestCluster;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{json, Value};

/// The systems of the default galaxy.
const SYSTEMS: usize = 36;
/// How long the two nodes may take to share the galaxy and their leases to say so.
const SETTLE: Duration = Duration::from_secs(90);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

async fn scrape(client: &reqwest::Client, base: &str) -> Scrape {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// A counter's sum over the samples whose labels include `labels`.
fn sum(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
            ref other => panic!("{metric} is no counter: {other:?}"),
        })
        .sum()
}

/// What a node's map says: (this node, slug -> owner, the slugs it serves).
fn owners_of(map: &Value) -> (Option<String>, BTreeMap<String, String>, BTreeSet<String>) {
    let node = map["node"].as_str().map(str::to_string);
    let owners = map["owners"]
        .as_object()
        .expect("owners")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let served = map["served_here"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (node, owners, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_galaxys_map_names_the_node_of_each_system_and_metrics_move() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "the map on nodes")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(&workspace_root(), exe);
    let mut nodes: Vec<Node> = ["alpha", "beta"]
        .iter()
        .map(|n| {
            let mut node = Node::new(&cluster, n, dir.path());
            node.flags.push("--spread".into());
            node
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Both nodes serve a share, together every system, and each map names them alike.
    let deadline = Instant::now() + SETTLE;
    let maps = loop {
        let mut maps = Vec::new();
        for n in &nodes {
            maps.push(get_json(&client, &format!("{}/v1/map", n.url())).await);
        }
        let agreed = maps.iter().all(Option::is_some) && {
            let views: Vec<_> = maps.iter().flatten().map(owners_of).collect();
            let served: usize = views.iter().map(|v| v.2.len()).sum();
            served == SYSTEMS
                && views
                    .iter()
                    .all(|v| !v.2.is_empty() && v.1.len() == SYSTEMS)
                && views.windows(2).all(|w| w[0].1 == w[1].1)
        };
        if agreed {
            break maps.into_iter().flatten().collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "the two nodes did not share the galaxy with their leases agreeing in {SETTLE:?}: \
             {maps:?}\n{}\n{}",
            nodes[0].tail(20),
            nodes[1].tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (n, map) in nodes.iter().zip(&maps) {
        let (node, owners, served) = owners_of(map);
        assert_eq!(node.as_deref(), Some(n.name.as_str()), "{map}");
        assert_eq!(map["spread"], true);
        for slug in &served {
            assert_eq!(owners[slug], n.name, "{slug} is served by {}", n.name);
        }
        let theirs: BTreeSet<&String> = owners.values().collect();
        assert_eq!(theirs.len(), 2, "both nodes named: {owners:?}");
    }

    // /metrics of a --nats node: it parses, and a join and a jump through alpha move it.
    let alpha = nodes[0].url();
    let beta = nodes[1].url();
    let before = [scrape(&client, &alpha).await, scrape(&client, &beta).await];
    let joined: Value = client
        .post(format!("{alpha}/v1/join"))
        .json(&json!({"name": "ann"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = joined["token"].as_str().expect("a token").to_string();
    let systems = get_json(&client, &format!("{alpha}/v1/systems"))
        .await
        .unwrap();
    let home = systems
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["home"] == true)
        .unwrap();
    let to = home["neighbours"][0].as_str().unwrap();
    let go = client
        .post(format!("{alpha}/v1/travel"))
        .bearer_auth(&token)
        .json(&json!({"to": to, "wait": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(go.status(), 200, "{:?}", go.text().await);
    let after = [scrape(&client, &alpha).await, scrape(&client, &beta).await];
    let delta = |i: usize, metric: &str, labels: &[(&str, &str)]| {
        sum(&after[i], metric, labels) - sum(&before[i], metric, labels)
    };
    let requests = "mltrader_http_requests_total";
    assert_eq!(
        delta(0, requests, &[("route", "POST /v1/join"), ("code", "201")]),
        1.0,
        "the join, counted at the node it came to"
    );
    assert_eq!(
        delta(
            0,
            requests,
            &[("route", "POST /v1/travel"), ("code", "200")]
        ),
        1.0,
        "the jump's request, counted at the node it came to"
    );
    assert_eq!(
        delta(0, "mltrader_jumps_total", &[]) + delta(1, "mltrader_jumps_total", &[]),
        1.0,
        "one jump, counted by the node that runs the home system"
    );

    // The economy's page cannot read JetStream: it says so, and its JSON answers 501.
    let page = client.get(format!("{alpha}/economy")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("id=\"unavailable\"") && page.contains("JetStream"),
        "{page}"
    );
    let json = client
        .get(format!("{alpha}/v1/economy/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 501);
    for n in &mut nodes {
        n.stop();
    }
}
