//! Test code only: a sound data directory written by a real mesh (built once, copied for each
//! test), and the tools to damage a copy precisely: read a log's records, edit them, and write
//! them back re-encoded with valid checksums and sequence numbers, so that a forgery is caught
//! by the invariant it breaks and not merely as a bad checksum.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::directory::{Place, SystemPlace};
use crate::instances::InstancePolicy;
use crate::test_support::fast_config;
use crate::Mesh;
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::Good;
use sim::instance::InstanceId;
use sim::market::{Order, Side};
use store::datadir::DataDir;
use store::record::{parse_line, Line, BATCH_FIELD};

/// One record, owned and editable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub seq: u64,
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

impl Rec {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value` (the field must exist).
    pub fn set(&mut self, key: &str, value: &str) {
        let field = self
            .fields
            .iter_mut()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("the record has no field {key}"));
        field.1 = value.to_string();
    }

    /// Whether this is a `kind` record whose `key` is `value`.
    pub fn is(&self, kind: &str, key: &str, value: &str) -> bool {
        self.kind == kind && self.get(key) == Some(value)
    }

    /// The record at tick `t` (a copy appended to another log must not go back in time).
    pub fn at_tick(mut self, t: &str) -> Rec {
        self.set("t", t);
        self
    }

    /// The record without its batch mark (to copy it elsewhere).
    pub fn unbatched(&self) -> Rec {
        let mut r = self.clone();
        r.fields.retain(|(k, _)| k != BATCH_FIELD);
        r
    }
}

/// Every record of the log at `path` (valid ones; the fixture's logs are sound).
pub fn read_recs(path: &Path) -> Vec<Rec> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|line| {
            let rec = parse_line(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Rec {
                seq: rec.seq,
                kind: rec.kind.to_string(),
                fields: rec
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
        })
        .collect()
}

/// Writes `recs` as the log at `path`: numbered from `first` on, each with a valid checksum,
/// batch marks kept.
pub fn write_recs(path: &Path, first: u64, recs: &[Rec]) {
    let mut buf = String::new();
    for (i, rec) in recs.iter().enumerate() {
        let mut line = Line::new(&mut buf, first + i as u64, &rec.kind);
        for (k, v) in &rec.fields {
            match v.parse::<u64>() {
                Ok(n) if k == BATCH_FIELD => line.batch_mark(n),
                _ => line.field(k, v),
            };
        }
        line.finish();
    }
    std::fs::write(path, buf).unwrap();
}

/// Edits the log at `path` record by record and writes it back re-encoded.
pub fn edit_log(path: &Path, edit: impl FnOnce(&mut Vec<Rec>)) {
    let mut recs = read_recs(path);
    let first = recs.first().map_or(1, |r| r.seq);
    edit(&mut recs);
    write_recs(path, first, &recs);
}

/// Rewrites the data directory of a galaxy served by one node as `mltrader export` writes a
/// spread galaxy's: the transition log's jumps between systems go to `jumps.log`, numbered
/// from 1 (moves between instances are never published), the transition log is left empty,
/// and the snapshots are removed (a test that forges a log then has no snapshot disagreeing).
pub fn as_spread_export(datadir: &DataDir, galaxy: &Galaxy) {
    let tlog = datadir.transitions_log();
    let system_of = |slug: &str| {
        InstanceId::parse(galaxy, slug)
            .expect("a slug of the galaxy")
            .system
    };
    let published: Vec<Rec> = read_recs(&tlog)
        .into_iter()
        .filter(|r| r.kind == "jump")
        .filter(|r| system_of(r.get("from").unwrap()) != system_of(r.get("to").unwrap()))
        .map(|r| r.unbatched())
        .collect();
    write_recs(&datadir.jumps_log(), 1, &published);
    std::fs::write(&tlog, b"").unwrap();
    std::fs::remove_dir_all(datadir.snapshots_dir()).unwrap();
    std::fs::create_dir_all(datadir.snapshots_dir()).unwrap();
}

/// The tick of the last record of `recs` that has one.
pub fn last_tick(recs: &[Rec]) -> String {
    recs.iter()
        .rev()
        .find_map(|r| r.get("t"))
        .unwrap_or("0")
        .to_string()
}

/// Removes record `i`, handing its batch mark (if any) to the next record.
pub fn remove(recs: &mut Vec<Rec>, i: usize) -> Rec {
    let gone = recs.remove(i);
    if let (Some(mark), Some(next)) = (
        gone.fields.iter().find(|(k, _)| k == BATCH_FIELD).cloned(),
        recs.get_mut(i),
    ) {
        if next.get(BATCH_FIELD).is_none() {
            next.fields.insert(0, mark);
        }
    }
    gone
}

/// The index of the only record `pick` accepts.
pub fn find(recs: &[Rec], pick: impl Fn(&Rec) -> bool) -> usize {
    let found: Vec<usize> = (0..recs.len()).filter(|&i| pick(&recs[i])).collect();
    assert_eq!(found.len(), 1, "expected one such record, found {found:?}");
    found[0]
}

/// A sound directory where the home system split: `p 0` .. `p 7` join home, which opens
/// instances; the first player in an instance buys one unit there (an escrow the primary's
/// market takes, then settled).
pub fn crowded_copy() -> (Copy, InstanceId, String) {
    static CROWDED: OnceLock<(Sound, InstanceId, String)> = OnceLock::new();
    let (sound, at, trader) =
        CROWDED.get_or_init(|| std::thread::spawn(write_crowded).join().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    copy_dir(&sound.dir, &root);
    let copy = Copy {
        _dir: dir,
        datadir: DataDir::at(root),
        galaxy: Galaxy::default_galaxy(),
        home: sound.home,
        away: sound.away,
    };
    (copy, *at, trader.clone())
}

fn write_crowded() -> (Sound, InstanceId, String) {
    let dir = tempfile::tempdir().unwrap().keep();
    on_a_runtime_of_its_own(async {
        let datadir = DataDir::at(&dir);
        let mut config = fast_config();
        config.snapshot_every_records = 1_000_000;
        config.instances = InstancePolicy {
            split_above_players: 2,
            merge_below_players: 0,
            cooldown_ms: 0,
            max_instances: 4,
        };
        let (mesh, _) = Mesh::start(datadir, Galaxy::default_galaxy(), config)
            .await
            .unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("p {i}")).collect();
        for name in &names {
            mesh.join(name, "k").await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (trader, at) = loop {
            let found = names.iter().find_map(|n| match mesh.place(n) {
                Some(Place::In(at)) if !at.is_primary() => Some((n.clone(), at)),
                _ => None,
            });
            if let Some(found) = found {
                break found;
            }
            assert!(std::time::Instant::now() < deadline, "no instance opened");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let mut bought = false;
        for good in Good::ALL {
            let order = Order {
                side: Side::Buy,
                good,
                qty: 1,
                price_limit_cr: None,
            };
            if mesh.trade(&trader, order).await.is_ok() {
                bought = true;
                break;
            }
        }
        assert!(bought, "{trader} could buy nothing in {at:?}");
        mesh.stop().await.unwrap();
        let home = at.system;
        let away = mesh.galaxy().neighbours(home)[0];
        (Sound { dir, home, away }, at, trader)
    })
}

/// The sound directory and what happened in it.
pub struct Sound {
    pub dir: PathBuf,
    /// Where everyone joined.
    pub home: SystemId,
    /// Where `bob` and `cat` flew (one after the other, from `home`) and stayed.
    pub away: SystemId,
}

/// A copy of the sound directory, for one test to damage.
pub struct Copy {
    _dir: tempfile::TempDir,
    pub datadir: DataDir,
    pub galaxy: Galaxy,
    pub home: SystemId,
    pub away: SystemId,
}

impl Copy {
    pub fn system_log(&self, id: SystemId) -> PathBuf {
        self.datadir.system_log(self.galaxy.slug(id))
    }
}

/// A fresh copy of the sound directory.
pub fn sound_copy() -> Copy {
    let sound = sound();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    copy_dir(&sound.dir, &root);
    Copy {
        _dir: dir,
        datadir: DataDir::at(root),
        galaxy: Galaxy::default_galaxy(),
        home: sound.home,
        away: sound.away,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The sound directory, written once per test binary by a real mesh on its own runtime.
pub fn sound() -> &'static Sound {
    static SOUND: OnceLock<Sound> = OnceLock::new();
    SOUND.get_or_init(|| std::thread::spawn(write_sound).join().unwrap())
}

/// A real mesh: `ann`, `bob`, `cat` and `dan` join; `ann` flies out and back and refuels;
/// `bob` then `cat` fly from home to the same neighbour (two jumps of one origin to one
/// destination) and stay; `dan` buys one unit. Snapshots only at the stop, which covers all.
fn write_sound() -> Sound {
    let dir = tempfile::tempdir().unwrap().keep();
    on_a_runtime_of_its_own(async {
        let datadir = DataDir::at(&dir);
        let mut config = fast_config();
        config.snapshot_every_records = 1_000_000;
        let (mesh, _) = Mesh::start(datadir, Galaxy::default_galaxy(), config)
            .await
            .unwrap();
        for name in ["ann", "bob", "cat", "dan"] {
            mesh.join(name, "k").await.unwrap();
        }
        let Some(SystemPlace::In(home)) = mesh.locate("ann") else {
            panic!("ann is not in a system");
        };
        let away = mesh.galaxy().neighbours(home)[0];
        for name in ["bob", "cat"] {
            assert_eq!(mesh.locate(name), Some(SystemPlace::In(home)));
        }
        mesh.jump("ann", away).await.unwrap();
        mesh.wait_landing("ann").await.unwrap();
        mesh.jump("ann", home).await.unwrap();
        mesh.wait_landing("ann").await.unwrap();
        mesh.refuel("ann", Some(1)).await.unwrap();
        for name in ["bob", "cat"] {
            mesh.jump(name, away).await.unwrap();
            mesh.wait_landing(name).await.unwrap();
        }
        let bought = futures_buy(&mesh).await;
        assert!(bought, "dan could buy no good at home");
        mesh.stop().await.unwrap();
        Sound { dir, home, away }
    })
}

/// `dan` buys one unit of the first good home sells.
async fn futures_buy(mesh: &Mesh) -> bool {
    for good in Good::ALL {
        let order = Order {
            side: Side::Buy,
            good,
            qty: 1,
            price_limit_cr: None,
        };
        if mesh.trade("dan", order).await.is_ok() {
            return true;
        }
    }
    false
}

/// Runs `work` on a runtime of its own: the sound directories are written once per test
/// process, from whichever test asks first, outside any test's runtime.
fn on_a_runtime_of_its_own<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(work)
}
