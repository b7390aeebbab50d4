//! Connection caps: how many TCP connections the API holds at once, in total and per client
//! address, and how many file descriptors that total may use beside the mesh's own files.
//!
//! A client that opens sockets and never finishes a request must not be able to take every
//! descriptor of the process: the mesh writes its logs, snapshots and player logs through the
//! same descriptor table, and a write that cannot open its file fails. So the total cap is the
//! open-file limit less a reserve derived from what the mesh keeps open ([`mesh_reserve_files`]),
//! and one address may hold only [`DEFAULT_MAX_CONNECTIONS_PER_IP`] of it.
//!
//! Owns the admission arithmetic and its counters; never touches a socket, never sleeps and
//! never reads a clock (the accept loop in `net::server` does all three).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mesh::projector::player_files_open_max;

/// Connections one client address may hold open at once, loopback included (a bot farm or a
/// test on one machine that needs more says so with `serve --max-connections-per-ip`).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// Descriptors one shard (a system or one of its instances) may hold at once: its log, a
/// snapshot being written (the temporary file, then its directory for the rename's fsync)
/// and one read of its files during recovery or compaction.
pub const FILES_PER_SHARD: usize = 4;

/// Descriptors the projector may open beyond its cache of player logs: a player file reopened
/// to sync it and the players directory synced after it.
pub const PLAYER_LOG_SYNC_FILES: usize = 2;

/// Descriptors of the process that are neither shards, player logs nor API connections:
/// stdin/stdout/stderr, the runtime's epoll, event and signal descriptors, the data directory's
/// LOCK, the transition log and its checkpoint, the accounts and directory files, `/proc`
/// reads of the benches, history reads of the API (a player's log, one per request) and the
/// descriptor a refused connection holds between accept and close.
pub const MESH_FIXED_FILES: usize = 128;

/// The fewest connections the API may be left with: below this the reserve eats the limit
/// and `serve` refuses to start (raise the open-file limit).
pub const MIN_MAX_CONNECTIONS: usize = 64;

const _: () = assert!(MIN_MAX_CONNECTIONS <= DEFAULT_MAX_CONNECTIONS_PER_IP);
const _: () = assert!(FILES_PER_SHARD >= 1 && PLAYER_LOG_SYNC_FILES >= 1);

/// Descriptors the mesh must always be able to open under a process limit of
/// `descriptor_limit`: every shard's files (`shards`: systems times the instances each may
/// open), the projector's cache of player logs (which sizes itself from the same limit), the
/// fixed ones, and the client side of `extra_clients` in-process connections (the demo swarm).
pub fn mesh_reserve_files(descriptor_limit: usize, shards: usize, extra_clients: usize) -> usize {
    MESH_FIXED_FILES
        + shards * FILES_PER_SHARD
        + player_files_open_max(descriptor_limit)
        + PLAYER_LOG_SYNC_FILES
        + extra_clients
}

/// The limit is too small for the mesh and the fewest connections together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "the open-file limit is {limit} and the mesh keeps {reserve} in reserve, leaving \
         {left} for connections (at least {MIN_MAX_CONNECTIONS} needed); raise the limit \
         (ulimit -n) or run fewer systems or instances"
    )]
    TooFewDescriptors {
        limit: usize,
        reserve: usize,
        left: usize,
    },
    #[error(
        "--max-connections {asked} is more than the {left} descriptors left for connections \
         (open-file limit {limit}, {reserve} kept for the mesh's logs); raise the limit \
         (ulimit -n) or ask for fewer"
    )]
    AskedTooMany {
        asked: usize,
        left: usize,
        limit: usize,
        reserve: usize,
    },
}

/// The total connection cap: `asked` (or all that is left when `None`), at most the limit less
/// the reserve.
pub fn max_connections(
    descriptor_limit: usize,
    reserve: usize,
    asked: Option<usize>,
) -> Result<usize, BudgetError> {
    let left = descriptor_limit.saturating_sub(reserve);
    if left < MIN_MAX_CONNECTIONS {
        return Err(BudgetError::TooFewDescriptors {
            limit: descriptor_limit,
            reserve,
            left,
        });
    }
    match asked {
        Some(asked) if asked > left => Err(BudgetError::AskedTooMany {
            asked,
            left,
            limit: descriptor_limit,
            reserve,
        }),
        Some(asked) => Ok(asked),
        None => Ok(left),
    }
}

/// The caps a listener enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Connections open at once, all addresses together.
    pub max_total: usize,
    /// Connections open at once from one address; `None`: no per-address cap.
    pub max_per_ip: Option<usize>,
}

/// Why a connection was closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The total cap was reached.
    Total,
    /// Its address holds its cap already.
    PerAddress,
}

/// The connections open now, by address, and the refusals so far.
pub struct Admission {
    caps: Caps,
    /// std mutex: held for a counter update only, never across an await.
    open: Mutex<Open>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it (when the connection ends) frees its place.
pub struct Permit {
    ip: IpAddr,
    admission: Arc<Admission>,
}

/// Refusals counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    pub over_total: u64,
    pub over_per_ip: u64,
}

impl Refused {
    pub fn sum(&self) -> u64 {
        self.over_total + self.over_per_ip
    }
}

impl Admission {
    pub fn new(caps: Caps) -> Arc<Admission> {
        assert!(caps.max_total > 0, "a listener that admits nobody");
        Arc::new(Admission {
            caps,
            open: Mutex::new(Open::default()),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
        })
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Admits a connection from `ip`, or says which cap it is over (and counts it).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.caps.max_total {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let of_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if self.caps.max_per_ip.is_some_and(|max| of_ip >= max) {
            self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerAddress);
        }
        open.total += 1;
        open.by_ip.insert(ip, of_ip + 1);
        Ok(Permit {
            ip,
            admission: self.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Refusals so far.
    pub fn refused(&self) -> Refused {
        Refused {
            over_total: self.refused_total.load(Ordering::Relaxed),
            over_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        assert!(open.total > 0, "a connection released twice");
        open.total -= 1;
        match open.by_ip.get_mut(&ip) {
            Some(1) => {
                open.by_ip.remove(&ip);
            }
            Some(n) => *n -= 1,
            None => unreachable!("a permit of {ip} without its count"),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_gets_its_cap_and_the_others_still_get_in() {
        let a = Admission::new(Caps {
            max_total: 10,
            max_per_ip: Some(3),
        });
        let held: Vec<Permit> = (0..3).map(|_| a.admit(ip(2)).unwrap()).collect();
        assert_eq!(a.admit(ip(2)).err(), Some(Refusal::PerAddress));
        assert!(a.admit(ip(1)).is_ok());
        assert_eq!(a.open(), 3, "the permit of 127.0.0.1 was dropped at once");
        drop(held);
        assert_eq!(a.open(), 0);
        assert!(a.admit(ip(2)).is_ok(), "released places are free again");
        assert_eq!(
            a.refused(),
            Refused {
                over_total: 0,
                over_per_ip: 1
            }
        );
    }

    #[test]
    fn the_total_cap_holds_across_addresses() {
        let a = Admission::new(Caps {
            max_total: 4,
            max_per_ip: None,
        });
        let held: Vec<Permit> = (0..4).map(|i| a.admit(ip(i)).unwrap()).collect();
        assert_eq!(a.admit(ip(9)).err(), Some(Refusal::Total));
        assert_eq!(a.refused().over_total, 1);
        drop(held);
        assert!(a.admit(ip(9)).is_ok());
    }

    #[test]
    fn the_reserve_covers_shards_and_player_logs_and_connections_get_the_rest() {
        let limit = 20_000;
        let reserve = mesh_reserve_files(limit, 30 * 16, 0);
        assert_eq!(
            reserve,
            MESH_FIXED_FILES + 480 * FILES_PER_SHARD + 5_000 + PLAYER_LOG_SYNC_FILES
        );
        assert_eq!(max_connections(limit, reserve, None), Ok(limit - reserve));
        assert_eq!(max_connections(limit, reserve, Some(1_000)), Ok(1_000));
        assert!(matches!(
            max_connections(limit, reserve, Some(limit)),
            Err(BudgetError::AskedTooMany { .. })
        ));
        let small = 1_024;
        let err = max_connections(small, mesh_reserve_files(small, 480, 0), None).unwrap_err();
        assert!(err.to_string().contains("raise the limit"), "{err}");
    }
}
