//! One writer per data directory: a second `serve`, or a `compact`, on a directory a server
//! is using is refused with a message that says what to do, and so is a `check` (but not a
//! `check --live`); after the server stops, all work.

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

    assert!(server.stop_in_place().success());
    let compact = mltrader()
        .args(["compact", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(compact.status.success(), "{compact:?}");
}
