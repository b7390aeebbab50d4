//! Where the nats-server executable is, for tests and benchmarks: `MLTRADER_NATS_SERVER`, then
//! `PATH`, then `target/nats-venv/bin/nats-server` under the workspace (where
//! scripts/nats-install.sh puts the pinned one).
//!
//! Never installs or starts anything.

use std::path::{Path, PathBuf};

/// The nats-server executable, if there is one (see the module's comment).
pub fn nats_server(workspace_root: &Path) -> Option<PathBuf> {
    let from_env = std::env::var_os("MLTRADER_NATS_SERVER").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let venv = workspace_root.join("target/nats-venv/bin/nats-server");
    from_env
        .or(on_path)
        .or_else(|| venv.is_file().then_some(venv))
}

/// For a test that needs the server to test `what`: the executable, or None after a loud
/// message. With `MLTRADER_NATS_REQUIRED=1` (CI) a missing server fails the test instead.
pub fn nats_server_for_test(workspace_root: &Path, what: &str) -> Option<PathBuf> {
    let found = nats_server(workspace_root);
    if found.is_none() {
        let required = std::env::var("MLTRADER_NATS_REQUIRED").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "MLTRADER_NATS_REQUIRED=1 but no nats-server (MLTRADER_NATS_SERVER, PATH, \
             target/nats-venv): run scripts/nats-install.sh"
        );
        eprintln!(
            "\n*** SKIPPED: no nats-server (MLTRADER_NATS_SERVER, PATH, target/nats-venv). \
             Run scripts/nats-install.sh to test {what}. ***\n"
        );
    }
    found
}
