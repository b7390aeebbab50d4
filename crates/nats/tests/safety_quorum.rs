//! The safety check with servers down: a node starts while one server of three is down (the
//! two that answer are checked and safe; the silent one is named in a warning), and refuses
//! to start when only one of three answers (a majority was not checked). A cluster of its own,
//! since servers are killed.

mod common;

use mltrader_nats::Nats;

#[test]
fn a_node_starts_with_one_server_of_three_down_and_not_with_two() {
    let Some(cluster) = common::Cluster::start_own() else {
        return;
    };
    cluster.kill("n3");
    if let Err(e) = Nats::connect(&cluster.inner.config("one-down")) {
        panic!("refused with one server of three down: {e}");
    }
    cluster.kill("n2");
    let err = match Nats::connect(&cluster.inner.config("two-down")) {
        Ok(_) => panic!("started with two servers of three down: a majority was not checked"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/varz"), "{err}");
    cluster.restart_dead();
    if let Err(e) = Nats::connect(&cluster.inner.config("all-back")) {
        panic!("refused once the servers are back: {e}");
    }
}
