//! `mltrader check`, the real binary, as an operator runs it: on a directory a real server
//! wrote (a swarm of bots trading and flying, then a clean stop) it says ok; on a copy damaged
//! in one precise way it exits 1 and names the file and the problem; on the directory of a
//! running server it refuses (exit 2) instead of reporting problems that are not there, and
//! `--live` proves each log on its own while the server writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{mltrader, Server};
use store::record::{parse_line, LineBuilder};

/// The directory a real server wrote: 6 bots for 3 s, then SIGTERM. Written once per run.
fn sound() -> &'static Path {
    static SOUND: OnceLock<PathBuf> = OnceLock::new();
    SOUND.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let data = root.join("data");
        let server = Server::start_with(Some(&data), &[], &[]);
        swarm(&server, 6, 3).wait().unwrap();
        assert!(server.stop().success());
        data
    })
}

/// `mltrader swarm` against `server`, started.
fn swarm(server: &Server, bots: u32, seconds: u32) -> std::process::Child {
    mltrader()
        .args(["swarm", "--seed", "7", "--server", server.url()])
        .args(["--bots", &bots.to_string()])
        .args(["--duration", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A copy of the sound directory to damage.
fn copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let status = Command::new("cp")
        .arg("-r")
        .arg(sound())
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    (dir, data)
}

fn check(data: &Path, extra: &[&str]) -> Output {
    mltrader()
        .args(["check", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

/// Asserts `check` exits 1 with a problem line naming `file` and saying `what`.
fn assert_fails(data: &Path, file: &Path, what: &str) {
    let out = check(data, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = file.display().to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("problem: ") && l.contains(&file) && l.contains(what)),
        "no problem line names {file} and says {what:?}:\n{stdout}"
    );
    assert!(stdout.lines().last().unwrap().starts_with("FAILED: "));
}

/// The system log with the most records (where the bots did most).
fn busiest_log(data: &Path) -> PathBuf {
    std::fs::read_dir(data.join("systems"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap()
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn check_passes_the_directory_a_real_server_wrote() {
    let out = check(sound(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn check_fails_naming_a_missing_transition_log() {
    let (_dir, data) = copy();
    let path = data.join("transitions.log");
    std::fs::remove_file(&path).unwrap();
    assert_fails(&data, &path, "missing: every start creates it");
}

#[test]
fn check_fails_naming_a_missing_system_log() {
    let (_dir, data) = copy();
    let path = busiest_log(&data);
    std::fs::remove_file(&path).unwrap();
    assert_fails(
        &data,
        &path,
        "missing: every start creates each system's log",
    );
}

#[test]
fn check_fails_naming_a_missing_players_folder_or_player_log() {
    let (_dir, data) = copy();
    let players = data.join("players");
    let one = std::fs::read_dir(&players)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(&one).unwrap();
    assert_fails(&data, &one, "missing, but event 1");
    std::fs::remove_dir_all(&players).unwrap();
    assert_fails(&data, &players, "missing: every start creates it");
}

#[test]
fn check_fails_naming_a_corrupted_checksum() {
    let (_dir, data) = copy();
    let path = busiest_log(&data);
    let mut all = lines(&path);
    let line = &mut all[1];
    let i = line.len() - 2;
    line[i] = if line[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, all.concat()).unwrap();
    assert_fails(&data, &path, "line 2 (byte");
    assert_fails(&data, &path, "checksum mismatch");
}

#[test]
fn check_fails_naming_a_log_cut_in_the_middle() {
    let (_dir, data) = copy();
    let path = busiest_log(&data);
    let mut all = lines(&path);
    let half = all[2].len() / 2;
    all[2].truncate(half);
    std::fs::write(&path, all.concat()).unwrap();
    assert_fails(&data, &path, "a later synced batch follows");
}

#[test]
fn check_fails_naming_a_forged_second_landing() {
    let (_dir, data) = copy();
    // Every `arrive` of the busiest system, the last one appended again, re-encoded with the
    // next sequence number and a valid checksum.
    let path = busiest_log(&data);
    let all = lines(&path);
    let last_seq = parse_line(all.last().unwrap()).unwrap().seq;
    let arrive = all
        .iter()
        .rev()
        .map(|l| parse_line(l).unwrap())
        .find(|r| r.kind == "arrive")
        .expect("the bots landed somewhere");
    let mut b = LineBuilder::new(last_seq + 1, "arrive");
    for (k, v) in arrive.fields.iter().filter(|(k, _)| *k != "b") {
        b.field(k, v);
    }
    let forged = b.finish();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(forged.as_bytes());
    std::fs::write(&path, bytes).unwrap();
    assert_fails(
        &data,
        &path,
        &format!("jump {} lands twice", arrive.get("xfer").unwrap()),
    );
}

#[test]
fn check_fails_naming_an_instance_log_never_opened() {
    let (_dir, data) = copy();
    let path = data.join("systems").join("sol.2.log");
    std::fs::write(&path, "").unwrap();
    assert_fails(&data, &path, "a log of instance 2, which Sol never opened");
}

#[test]
fn check_refuses_a_running_server_and_live_proves_each_log() {
    let server = Server::start(&[]);
    let data = server.data_dir().to_path_buf();
    let mut bots = swarm(&server, 30, 6);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut live_checks = 0;
    while bots.try_wait().unwrap().is_none() {
        let out = check(&data, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "in use by a running mltrader (LOCK held by pid {})",
                server.pid()
            )) && err.contains("--live"),
            "{err}"
        );
        let out = check(&data, &["--live"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("nothing across logs"), "{stdout}");
        assert!(stdout.lines().last().unwrap().starts_with("live ok: "));
        live_checks += 1;
    }
    assert!(live_checks >= 3, "only {live_checks} checks ran under load");
    assert!(server.stop().success());
}
