//! One writer per data directory: a second `serve`, or a `compact`, on a directory a server
//! is using is refused with a message that says what to do, and so are a `check` (but not a
//! `check --live`) and a `replay`; after the server stops, all work.

mod common;

use common::{mltrader, Server};

#[test]
fn a_data_directory_in_use_refuses_a_second_writer() {
    let mut server = Server::start(&[]);
    let data = server.data_dir().to_path_buf();

    let second = mltrader()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another mltrader"), "{err}");

    let compact = mltrader()
        .args(["compact", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(compact.status.code(), Some(2), "{compact:?}");

    // A whole check refuses (the logs change while read); `--live` reads each log alone.
    let check = mltrader()
        .args(["check", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let live = mltrader()
        .args(["check", "--live", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(live.status.success(), "{live:?}");
    // So does a replay, for the same reason.
    let replay = mltrader()
        .args(["replay", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(2), "{replay:?}");
    let err = String::from_utf8_lossy(&replay.stderr);
    assert!(err.contains("stop it first"), "{err}");

    assert!(server.stop_in_place().success());
    let compact = mltrader()
        .args(["compact", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(compact.status.success(), "{compact:?}");
}

/// A start refused for its settings or its address touches nothing: no data directory, no
/// LOCK, no archive/, no galaxy.toml; and the message says the threshold as a person reads it.
#[test]
fn a_refused_start_leaves_no_data_directory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let refused = mltrader()
        .args(["serve", "--listen", "127.0.0.1:0", "--split-above", "5"])
        .args(["--merge-below", "2", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--merge-below 2")
            && err.contains("must be less than 2, half of the split threshold of 5 rounded down"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start created {}", data.display());

    // An address in use is refused before the data directory is touched, too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let busy = mltrader()
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!busy.status.success(), "{busy:?}");
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("cannot listen on"),
        "{busy:?}"
    );
    assert!(
        !data.exists(),
        "a start refused its address created {}",
        data.display()
    );
}
