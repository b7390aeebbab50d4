//! `serve --nats`: the logs in a three-node JetStream cluster (scripts/nats-cluster.sh), the
//! galaxy's lease in its KV. A second node is refused while the first holds the lease; when
//! the first is paused past its lease (SIGSTOP), the second takes over with the player where
//! they were; the first, resumed (SIGCONT), learns it lost the lease and exits (3).
//!
//! Needs nats-server: `MLTRADER_NATS_SERVER`, PATH, or target/nats-venv (scripts/nats-install.sh).
//! Without it the test fails when `MLTRADER_NATS_REQUIRED=1` (CI) and skips loudly otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{mltrader, Player, Server};
use nats::testing::TestCluster;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn server_exe() -> Option<PathBuf> {
    nats::locate::nats_server_for_test(&workspace_root(), "serve --nats")
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) on a child of this process, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn a_standby_takes_over_a_paused_node_and_the_paused_node_stops() {
    let Some(exe) = server_exe() else { return };
    let cluster = TestCluster::start(&workspace_root(), exe);
    let alpha_flags = cluster.serve_flags("alpha");
    let alpha_flags: Vec<&str> = alpha_flags.iter().map(String::as_str).collect();
    let mut alpha = Server::start(&alpha_flags);
    let ann = Player::join(&alpha, "Ann");
    ann.run(&["travel", "Alpha Centauri"]).ok();

    // While alpha holds the lease, beta is refused, naming the holder.
    let beta_dir = tempfile::tempdir().unwrap();
    let beta_flags = cluster.serve_flags("beta");
    let refused = mltrader()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(beta_dir.path().join("data"))
        .args(&beta_flags)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a second node must not serve");
    assert!(said.contains("held by node=alpha"), "{said}");

    // alpha pauses past its lease; beta takes over.
    signal(alpha.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(11));
    let beta_flags: Vec<&str> = beta_flags.iter().map(String::as_str).collect();
    let beta = Server::start_with(Some(&beta_dir.path().join("data")), &[], &beta_flags);
    let status = ann.run_at(beta.url(), &["status"]).ok();
    assert!(
        status.stdout.contains("Ann is in Alpha Centauri"),
        "{status:?}"
    );
    ann.run_at(beta.url(), &["travel", "Sol"]).ok();

    // alpha resumes: its next renewal finds the lease gone, and it exits with 3.
    signal(alpha.pid(), libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = alpha.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the paused node still runs 20 s after SIGCONT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exited.code(), Some(3), "{exited:?}");
    let status = ann.run_at(beta.url(), &["status"]).ok();
    assert!(status.stdout.contains("Ann is in Sol"), "{status:?}");
}
