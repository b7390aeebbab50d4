//! The economy as this server shows it (`GET /economy`, `GET /v1/economy/report`): the same
//! [`EconomyReport`] `mltrader economy --report` prints (one computation, two views), built
//! from this server's data directory's logs by a full audit (`mesh::audit::audit_watched`), with
//! the audit's conservation figures beside it, and kept for [`REPORT_CACHE_MS`] so that a page
//! reload does not read every log again.
//!
//! Owns the cache and where the logs are read from; never writes a log, never takes the data
//! directory's lock (like `economy --report`, it reads beside the live server), and never
//! reads logs on an async worker (the audit runs on a blocking thread, one at a time).
//! With `serve --nats` the logs are in JetStream: this module cannot read them, and says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use mesh::audit::economy::{EconomyBook, EconomyReport, FlowTotals, GoodSummary, Window};
use mesh::audit::{audit_watched, AuditReport};
use sim::galaxy::Galaxy;
use store::datadir::DataDir;

/// How long a built report is served again before the logs are read anew, in milliseconds.
pub const REPORT_CACHE_MS: u64 = 5_000;
/// The most windows whose reports are kept at once (the oldest is dropped past it).
pub const MAX_CACHED_WINDOWS: usize = 8;

/// `mltrader check`'s conservation figures on the same logs, as `economy --report --json`
/// prints them beside the report.
#[derive(Clone, Debug, Serialize)]
pub struct CheckFigures {
    pub ok: bool,
    pub problems: usize,
    pub credits_held: u128,
    pub credits_granted: u128,
    pub credits_spent: u128,
}

impl CheckFigures {
    fn of(audit: &AuditReport) -> CheckFigures {
        CheckFigures {
            ok: audit.ok(),
            problems: audit.problems.len(),
            credits_held: audit.credits_held,
            credits_granted: audit.credits_granted,
            credits_spent: audit.credits_spent,
        }
    }
}

/// A report and the figures it must agree with, as one build of it found them.
#[derive(Debug, Serialize)]
pub struct Built {
    pub report: EconomyReport,
    pub check: CheckFigures,
    /// How long reading the logs took, in milliseconds.
    pub build_ms: u64,
    #[serde(skip)]
    pub built_at: Instant,
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum EconomyError {
    /// A node whose logs are in JetStream (`serve --nats`): nothing here reads them yet.
    #[error(
        "this server's logs are in JetStream (serve --nats) and this page reads log files only: \
         copy them with `mltrader export --nats URL --creds FILE --nats-monitor URL --data DIR`, then run `mltrader economy --report --data DIR`"
    )]
    LogsNotOnFiles,
    #[error("the economy report could not be built: {0}")]
    Failed(String),
}

/// The reports of this server's logs, built on demand and kept a few seconds.
pub struct EconomyView {
    /// The data directory whose logs are read; None: the logs are not on files here.
    logs: Option<DataDir>,
    galaxy: Galaxy,
    /// std mutex: held only to look up or insert, never across the build.
    cache: Mutex<Vec<(Window, Arc<Built>)>>,
    /// One build at a time: ten reloads at once read the logs once (the others wait, then find
    /// it in the cache), and an audit never takes both cores from the shards.
    building: tokio::sync::Mutex<()>,
}

impl EconomyView {
    /// A view of `logs` (None: a server whose logs are in JetStream) of `galaxy`.
    pub fn new(logs: Option<DataDir>, galaxy: Galaxy) -> EconomyView {
        EconomyView {
            logs,
            galaxy,
            cache: Mutex::new(Vec::new()),
            building: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a report can be built here at all.
    pub fn available(&self) -> bool {
        self.logs.is_some()
    }

    fn cached(&self, window: &Window) -> Option<Arc<Built>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = Duration::from_millis(REPORT_CACHE_MS);
        cache
            .iter()
            .find(|(w, b)| w == window && b.built_at.elapsed() < fresh)
            .map(|(_, b)| b.clone())
    }

    fn keep(&self, window: Window, built: Arc<Built>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(w, _)| *w != window);
        if cache.len() >= MAX_CACHED_WINDOWS {
            cache.remove(0);
        }
        cache.push((window, built));
        assert!(cache.len() <= MAX_CACHED_WINDOWS);
    }

    /// The report over `window`: from the cache if built less than [`REPORT_CACHE_MS`] ago,
    /// else read from the logs (on a blocking thread). A window that ends before it starts
    /// holds no tick: its report has no flow, no bucket and no price, and the circulation at
    /// `from` at both ends (read from the window open at `from`).
    pub async fn report(&self, window: Window) -> Result<Arc<Built>, EconomyError> {
        match window.to {
            Some(to) if to <= window.from => {
                let open = self.report_of_ticks(Window { to: None, ..window }).await?;
                Ok(Arc::new(empty(&open, window)))
            }
            _ => self.report_of_ticks(window).await,
        }
    }

    async fn report_of_ticks(&self, window: Window) -> Result<Arc<Built>, EconomyError> {
        assert!(window.to.is_none_or(|to| to > window.from));
        let Some(logs) = self.logs.clone() else {
            return Err(EconomyError::LogsNotOnFiles);
        };
        if let Some(b) = self.cached(&window) {
            return Ok(b);
        }
        let _one_at_a_time = self.building.lock().await;
        if let Some(b) = self.cached(&window) {
            return Ok(b);
        }
        let galaxy = self.galaxy.clone();
        let built = tokio::task::spawn_blocking(move || build(&logs, &galaxy, window))
            .await
            .map_err(|e| EconomyError::Failed(format!("the audit's thread: {e}")))?;
        let built = Arc::new(built);
        self.keep(window, built.clone());
        Ok(built)
    }
}

/// The report of the empty `window`, from the report of the window open at its start.
fn empty(open: &Built, window: Window) -> Built {
    let r = &open.report;
    assert_eq!(r.window.from, window.from);
    Built {
        report: EconomyReport {
            window,
            last_tick: r.last_tick,
            circulation_at_start_cr: r.circulation_at_start_cr,
            circulation_at_end_cr: r.circulation_at_start_cr,
            flows: FlowTotals::default(),
            buckets: Vec::new(),
            goods: r
                .goods
                .iter()
                .map(|g| GoodSummary {
                    good: g.good.clone(),
                    samples: 0,
                    at_floor_permille: 0,
                    at_ceiling_permille: 0,
                })
                .collect(),
            prices: Vec::new(),
        },
        check: open.check.clone(),
        build_ms: open.build_ms,
        built_at: open.built_at,
    }
}

/// Reads every log of `logs` once: the report over `window` and the audit's figures.
fn build(logs: &DataDir, galaxy: &Galaxy, window: Window) -> Built {
    let started = Instant::now();
    let mut book = EconomyBook::new(galaxy, window);
    let audit = audit_watched(logs, galaxy, &mut book);
    Built {
        report: book.report(),
        check: CheckFigures::of(&audit),
        build_ms: started.elapsed().as_millis() as u64,
        built_at: Instant::now(),
    }
}

/// Whether `datadir` holds this galaxy's logs as files (a server on files writes its home
/// system's log at start; one on JetStream leaves the directory without logs).
pub fn logs_on_files(datadir: &DataDir, galaxy: &Galaxy) -> bool {
    datadir.system_log(galaxy.slug(galaxy.home())).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::audit::economy::Window;

    #[tokio::test]
    async fn a_reload_within_the_cache_reads_no_log_and_another_window_does() {
        let dir = tempfile::tempdir().unwrap();
        let view = EconomyView::new(Some(DataDir::at(dir.path())), Galaxy::default_galaxy());
        let all = Window::all();
        let first = view.report(all).await.unwrap();
        let again = view.report(all).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from the cache");
        let other = Window {
            to: Some(100),
            ..all
        };
        let third = view.report(other).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &third), "another window is read anew");
        let empty = Window {
            from: 50,
            to: Some(10),
            ..all
        };
        let none = view.report(empty).await.unwrap();
        assert!(none.report.buckets.is_empty() && none.report.flows.trades == 0);
    }

    #[tokio::test]
    async fn without_log_files_the_view_says_why() {
        let view = EconomyView::new(None, Galaxy::default_galaxy());
        let e = view.report(Window::all()).await.unwrap_err();
        assert!(e.to_string().contains("JetStream"), "{e}");
    }
}
