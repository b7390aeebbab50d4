//! The bound on a node's stop: once Ctrl-C or SIGTERM arrives, the process ends within
//! `--shutdown-grace-ms` ([`SHUTDOWN_GRACE_MS`] by default), even when NATS is unreachable and
//! a lease release, a hand-over, a log flush or a blocking NATS call would wait for ever.
//!
//! Owns the watchdog and the name of the step the stop is at ([`Leaving`]); the serve commands
//! say which step they are in, and the watchdog, on expiry, prints that step and exits with
//! [`SHUTDOWN_GAVE_UP_EXIT`]. It never acknowledges anything and never writes: what was
//! acknowledged is durable already (an action is acknowledged only once durable), and what was
//! not may be dropped, which its message says. A second signal during the stop ends the process
//! at once, the same way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a node may take to stop after Ctrl-C or SIGTERM, in milliseconds. A clean leave
/// hands every unit over one after another (about 330 ms each, measured by tests/nats_stop.rs:
/// a node of two took 11 s with NATS up), so one node holding all 36 units of the default
/// galaxy needs about 20 s on a loaded machine; systemd's default stop timeout (90 s) is longer.
pub const SHUTDOWN_GRACE_MS: u64 = 60_000;

/// The exit status of a node that gave up on a clean stop (2 is an error, 3 a node that lost
/// its lease: `on_nats::EXIT_NOT_OWNER`).
pub const SHUTDOWN_GAVE_UP_EXIT: u8 = 4;
const _: () = assert!(SHUTDOWN_GAVE_UP_EXIT != super::on_nats::EXIT_NOT_OWNER);

/// Which step of its stop the node is at, shared with the watchdog. A std mutex: held only to
/// copy or replace a short string, never across an await.
#[derive(Clone)]
pub struct Leaving {
    step: Arc<Mutex<String>>,
}

impl Leaving {
    pub fn new() -> Leaving {
        Leaving {
            step: Arc::new(Mutex::new(
                "the start or a round of leases (the leave had not begun)".to_string(),
            )),
        }
    }

    /// The stop is now at `step` (said as what it waits for, e.g. "handing sys.sol over").
    pub fn at(&self, step: impl Into<String>) {
        *self.step.lock().unwrap_or_else(|e| e.into_inner()) = step.into();
    }

    fn step(&self) -> String {
        self.step.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on, the first Ctrl-C or SIGTERM starts the clock: the process exits
    /// [`SHUTDOWN_GAVE_UP_EXIT`] `grace_ms` later (or at a second signal) unless it has ended.
    /// Must be called inside a tokio runtime (the signals are listened to from this call on).
    pub fn arm(&self, node: &str, grace_ms: u64) {
        assert!(
            grace_ms > 0,
            "a grace of 0 ms would never let a node stop cleanly"
        );
        let first = net::shutdown::stop_signal();
        let (me, node) = (self.clone(), node.to_string());
        tokio::spawn(async move {
            first.await;
            let signalled = Instant::now();
            // The second signal, listened to from the first on.
            let second = net::shutdown::stop_signal();
            // A thread, not a task: the runtime's workers may all be stuck in what it gives up
            // on, and its shutdown waits for blocking tasks without end.
            let watchdog = me.clone();
            let name = node.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(grace_ms));
                watchdog.give_up(&name, signalled, "its stop took longer than the grace");
            });
            second.await;
            me.give_up(&node, signalled, "a second signal");
        });
    }

    /// Ends the process: the step it gave up on, and what that means for the players.
    fn give_up(&self, node: &str, signalled: Instant, why: &str) -> ! {
        eprintln!(
            "node {node}: exiting without a clean stop ({why}, {} ms after the signal); gave up on: {}. \
             What was acknowledged is durable; what was not acknowledged may be dropped; leases \
             not released expire after a lease of silence",
            signalled.elapsed().as_millis(),
            self.step()
        );
        std::process::exit(SHUTDOWN_GAVE_UP_EXIT.into());
    }
}
