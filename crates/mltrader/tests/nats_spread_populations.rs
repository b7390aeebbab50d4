//! `GET /v1/systems` of a galaxy spread over two nodes (`serve --nats --spread`, no regions):
//! the node that does not run the home system shows its population as heard from the node
//! that does (`populations::Neighbours`), with its age, where it showed 0 before.
//!
//! Small: a three-server cluster, two nodes, one player; about half a minute. Needs
//! nats-server (scripts/nats-install.sh); fails without it under `MLTRADER_NATS_REQUIRED=1`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::{http, Node};
use nats::testing::TestCluster;
use serde_json::{json, Value};

/// How long the nodes may take to share the galaxy, or a view to change.
const WAIT: Duration = Duration::from_secs(90);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn get(node: &Node, path: &str) -> Value {
    match http(&node.url(), "GET", path, None) {
        Some((200, v)) => v,
        other => Value::String(format!("{other:?}")),
    }
}

/// `slug` as `node`'s `/v1/systems` lists it.
fn system(node: &Node, slug: &str) -> Value {
    let systems = get(node, "/v1/systems");
    systems
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slug"] == slug).cloned())
        .unwrap_or(systems)
}

fn runs(node: &Node, slug: &str) -> bool {
    get(node, "/v1/status")
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["slug"] == slug))
}

fn wait_for(
    what: &str,
    nodes: &[Node],
    mut seen: impl FnMut() -> Value,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let v = seen();
        if ok(&v) {
            return v;
        }
        assert!(
            started.elapsed() < WAIT,
            "after {WAIT:?}, {what}: {v}\n{}",
            nodes
                .iter()
                .map(|n| format!("{}:\n{}", n.name, n.tail(20)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_shows_the_population_of_a_system_another_node_runs() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "spread populations")
    else {
        return;
    };
    let cluster = TestCluster::start(&workspace_root(), exe);
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["p1", "p2"]
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
    // Both nodes run a share of the galaxy before the join (so that the home system's owner
    // stays where it is).
    wait_for(
        "both nodes run units",
        &nodes,
        || {
            json!([
                runs(&nodes[0], "sol") || runs(&nodes[1], "sol"),
                get(&nodes[0], "/v1/status"),
                get(&nodes[1], "/v1/status")
            ])
        },
        |v| {
            v[0] == true
                && v[1].as_array().is_some_and(|s| !s.is_empty())
                && v[2].as_array().is_some_and(|s| !s.is_empty())
        },
    );
    wait_for(
        "a join",
        &nodes,
        || {
            let (code, body) = http(
                &nodes[0].url(),
                "POST",
                "/v1/join",
                Some(&json!({"name": "cy"})),
            )
            .unwrap_or((0, Value::Null));
            json!({"code": code, "body": body})
        },
        |v| v["code"] == 201,
    );
    // The node that does not run Sol (asked at each look: a unit may move between the nodes
    // while they settle) shows cy there, heard from the one that does, with its age.
    let heard = wait_for(
        "a node that does not run Sol hears its population from the one that does",
        &nodes,
        || {
            let views: Vec<Value> = nodes
                .iter()
                .filter(|n| !runs(n, "sol"))
                .map(|n| json!({"node": n.name, "sol": system(n, "sol")}))
                .collect();
            json!(views)
        },
        |views| {
            views.as_array().is_some_and(|v| {
                v.len() == 1
                    && v[0]["sol"]["population"] == 1
                    && v[0]["sol"]["as_of_s_ago"].as_f64().is_some_and(|a| a < 3.0)
            })
        },
    );
    eprintln!("spread: Sol as heard by the node that does not run it: {heard}");
    assert!(
        heard[0]["sol"].get("served_in").is_none(),
        "no regions: {heard}"
    );
    wait_for(
        "the node that runs Sol shows its own figures",
        &nodes,
        || {
            let views: Vec<Value> = nodes
                .iter()
                .filter(|n| runs(n, "sol"))
                .map(|n| system(n, "sol"))
                .collect();
            json!(views)
        },
        |views| {
            views.as_array().is_some_and(|v| {
                v.len() == 1 && v[0]["population"] == 1 && v[0].get("as_of_s_ago").is_none()
            })
        },
    );
    for n in &mut nodes {
        n.stop();
    }
}
