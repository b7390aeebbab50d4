//! `mltrader serve --demo`, the real binary: its bots join and trade in the server's own
//! galaxy within seconds, SIGTERM stops the bots and then the server cleanly (exit 0, the
//! swarm's summary and "stopped cleanly" printed), and `mltrader check` finds the data
//! directory sound, the bots' joins and trades in the system logs (a demo's broke bot starts over
//! as a new pilot: one join more, counted by the summary).

mod common;

use std::time::{Duration, Instant};

use common::{check, Server};

/// Bots the demo runs here (fewer than its default, for a small machine).
const BOTS: usize = 5;
/// How long the bots play before the SIGTERM.
const PLAY: Duration = Duration::from_secs(4);

#[test]
fn serve_demo_bots_join_and_trade_and_sigterm_stops_it_cleanly() {
    let mut server = Server::start(&["--demo", "--bots", &BOTS.to_string()]);
    std::thread::sleep(PLAY);
    let status = server.stop_in_place();
    assert!(status.success(), "serve --demo stopped with {status}");

    // The output thread may still be reading the last lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    let output = loop {
        let output = server.output();
        if output.iter().any(|l| l.starts_with("stopped cleanly")) || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = output.join("\n");
    assert!(
        said.contains(&format!("demo: {BOTS} trader bots")),
        "{said}"
    );
    // The swarm stops before the server, and says what its bots did.
    let summary = output
        .iter()
        .position(|l| l.starts_with("swarm: "))
        .unwrap_or_else(|| panic!("no swarm summary at the stop:\n{said}"));
    let stopped = output
        .iter()
        .position(|l| l.starts_with("stopped cleanly"))
        .unwrap_or_else(|| panic!("no clean stop:\n{said}"));
    assert!(summary < stopped, "the bots stop first:\n{said}");
    // A demo's broke bot starts over as a new pilot (a join more), which the summary counts.
    let started_over = output
        .iter()
        .find_map(|l| number_before(l, " broke bots started over"))
        .unwrap_or(0);
    let joined = number_before(&output[summary], " joined")
        .unwrap_or_else(|| panic!("no join count in {:?}", output[summary]));
    assert_eq!(
        joined,
        BOTS as u64 + started_over,
        "every bot joined once, and once more each time one started over:\n{said}"
    );
    let trades = number_before(&output[summary + 1], " trades")
        .unwrap_or_else(|| panic!("no trade count in {:?}", output[summary + 1]));
    assert!(trades > 0, "the bots traded: {}", output[summary + 1]);

    let report = check(server.data_dir());
    assert!(
        report.status.success(),
        "check after the demo: {}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    // What the summary claims is in the logs: every bot joined, and trades were recorded.
    let (mut joins, mut logged_trades) = (0, 0);
    for entry in std::fs::read_dir(server.data_dir().join("systems")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let mut words = line.split(' ').skip(1);
            match words.next() {
                Some("join") if line.contains(" player=bot-") => joins += 1,
                Some("trade") if line.contains(" player=bot-") => logged_trades += 1,
                _ => {}
            }
        }
    }
    assert_eq!(joins, joined, "joins of bots in the system logs");
    assert!(
        logged_trades >= trades,
        "{trades} trades acknowledged, {logged_trades} in the logs"
    );
}

/// The number just before `word` in `line` ("  12 jumps (3.0/s), 7 trades" -> 7 for " trades").
fn number_before(line: &str, word: &str) -> Option<u64> {
    let before = &line[..line.find(word)?];
    before.rsplit(' ').next()?.parse().ok()
}
