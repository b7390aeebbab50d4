//! The safety check at start: every server is nats-server 2.10 or newer and syncs every write
//! (`jetstream { sync_interval: always }`), else the node refuses to start.
//!
//! Without `sync_interval: always` a JetStream server acknowledges writes it has not fsynced
//! (the default syncs every 2 minutes; Jepsen lost acknowledged writes on 2.12.1 that way), and
//! "nothing acknowledged is ever lost" would be false. The setting is only visible on a
//! server's monitoring port: `GET /varz` reports `jetstream.config.sync_always: true` when it is
//! set, and omits the field under the default (checked on 2.15.1). This module reads, never
//! writes, and never lets an unsafe server through unless the caller said
//! [`Safety::AllowUnsafeUnsyncedServerForTests`].
//!
//! A server whose monitoring port does not answer is not judged unsafe: a node must be able to
//! start (a standby restarted, a takeover) while one server of the cluster is down, as
//! JetStream itself keeps serving with a majority. So the check passes when a majority of the
//! monitoring URLs answer and every one that answers is safe (the silent ones are named in a
//! warning); it refuses when a server that answers is unsafe, or when fewer than a majority
//! answer.

use std::time::Duration;

use serde::Deserialize;

use crate::bridge::Bridge;
use crate::limits::{MIN_SERVER_VERSION, MONITOR_TIMEOUT_MS};
use crate::NatsError;

/// How strictly the servers are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safety {
    /// Refuse a server that is too old or does not sync every write (the only choice for a
    /// game that acknowledges anything to players).
    Required,
    /// Log the unsafe findings and go on: an acknowledged write may be lost in a crash. For
    /// tests against a throwaway server only; the name says so, so that nobody uses it by
    /// accident.
    AllowUnsafeUnsyncedServerForTests,
}

/// What `/varz` says that matters here.
#[derive(Deserialize)]
struct Varz {
    server_name: String,
    version: String,
    #[serde(default)]
    jetstream: Option<VarzJetStream>,
}

#[derive(Deserialize)]
struct VarzJetStream {
    #[serde(default)]
    config: Option<VarzJetStreamConfig>,
}

#[derive(Deserialize)]
struct VarzJetStreamConfig {
    #[serde(default)]
    sync_always: bool,
}

/// Checks the server the client connected to (version `connected_version`) and every server
/// whose monitoring URL is in `monitor_urls`.
pub fn check(
    bridge: &Bridge,
    connected_version: &str,
    monitor_urls: &[String],
    safety: Safety,
) -> Result<(), NatsError> {
    let mut findings = Vec::new();
    if let Err(e) = check_version("the connected server", connected_version) {
        findings.push(e);
    }
    if monitor_urls.is_empty() {
        findings.push(NatsError::Monitor {
            url: "(none)".into(),
            reason: "no monitoring URL given: the check reads `jetstream.config.sync_always` from each server's /varz; name every server's (--nats-monitor http://HOST:PORT)".into(),
        });
    }
    let mut silent = Vec::new();
    for url in monitor_urls {
        match check_server(bridge, url) {
            Ok(()) => {}
            Err(e @ NatsError::Monitor { .. }) => silent.push(e),
            Err(e) => findings.push(e),
        }
    }
    let answered = monitor_urls.len() - silent.len();
    if answered > monitor_urls.len() / 2 {
        for e in &silent {
            tracing::warn!("not checked (a majority of the servers were, and are safe): {e}");
            eprintln!("warning: a NATS server's monitoring did not answer, not checked: {e}");
        }
    } else {
        findings.extend(silent);
    }
    match (findings.into_iter().next(), safety) {
        (None, _) => Ok(()),
        (Some(first), Safety::Required) => Err(first),
        (Some(first), Safety::AllowUnsafeUnsyncedServerForTests) => {
            tracing::warn!("allowed for tests, but unsafe: {first}");
            Ok(())
        }
    }
}

/// Reads `url`'s /varz and checks its version and sync setting.
fn check_server(bridge: &Bridge, url: &str) -> Result<(), NatsError> {
    let varz_url = format!("{}/varz", url.trim_end_matches('/'));
    let monitor = |reason: String| NatsError::Monitor {
        url: varz_url.clone(),
        reason,
    };
    let fetch = {
        let varz_url = varz_url.clone();
        async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(MONITOR_TIMEOUT_MS))
                .build()?;
            client
                .get(&varz_url)
                .send()
                .await?
                .error_for_status()?
                .json::<Varz>()
                .await
        }
    };
    let varz = bridge.run(fetch)?.map_err(|e| monitor(e.to_string()))?;
    let server = format!("{} ({url})", varz.server_name);
    check_version(&server, &varz.version)?;
    let sync_always = varz
        .jetstream
        .and_then(|js| js.config)
        .is_some_and(|c| c.sync_always);
    if !sync_always {
        return Err(NatsError::Unsafe {
            server,
            reason: "JetStream does not sync every write (/varz has no `jetstream.config.sync_always: true`): it acknowledges writes it has not fsynced, and a crash may lose them".into(),
            remedy: "set `jetstream { sync_interval: always }`".into(),
        });
    }
    Ok(())
}

/// Refuses a version older than [`MIN_SERVER_VERSION`] (or one it cannot read).
fn check_version(server: &str, version: &str) -> Result<(), NatsError> {
    let (min_major, min_minor) = MIN_SERVER_VERSION;
    let unsafe_version = |reason: String| {
        NatsError::Unsafe {
        server: server.to_string(),
        reason,
        remedy: format!(
            "run nats-server {min_major}.{min_minor} or newer: scripts/nats-install.sh installs the pinned one"
        ),
    }
    };
    let parsed = parse_version(version)
        .ok_or_else(|| unsafe_version(format!("cannot read its version {version:?}")))?;
    if parsed < MIN_SERVER_VERSION {
        return Err(unsafe_version(format!(
            "version {version} cannot sync every write (`sync_interval: always` came with {min_major}.{min_minor})"
        )));
    }
    Ok(())
}

/// The major and minor numbers of a version like `2.15.1` or `v2.11.0-beta.1`.
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_2_10_are_refused() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.11.0-beta.1"), Some((2, 11)));
        assert!(check_version("s", "2.10.0").is_ok());
        assert!(check_version("s", "3.0.0").is_ok());
        let err = check_version("debian", "2.9.10").unwrap_err().to_string();
        assert!(err.contains("debian") && err.contains("2.9.10"), "{err}");
        assert!(err.contains("2.10 or newer"), "{err}");
        assert!(check_version("s", "banana").is_err());
    }
}
