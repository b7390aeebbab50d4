//! The client commands against a real server: join, travel along a route, scan, status,
//! refuel, and the ways a trip is refused, each with its exit code and a message that says
//! what to do.

mod common;

use common::{free_port, Player, Server};

#[test]
fn players_join_travel_a_route_and_see_each_other() {
    let server = Server::start(&[]);
    let ann = Player::join(&server, "Ann");
    let bob = Player::join(&server, "Bob Two");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ann.token_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the owner's alone");
    }
    let status = ann.run(&["status"]).ok();
    assert!(status.stdout.contains("Ann is in Sol"), "{status:?}");

    // Sol → Barnard's Star → Ross 154: two jumps, a line per hop.
    let trip = ann.run(&["travel", "Ross 154"]).ok();
    let lines: Vec<&str> = trip.stdout.lines().collect();
    assert!(
        lines[0].starts_with("> Route to Ross 154: Sol → Barnard's Star → Ross 154 (2 jumps"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("> Entering jump 1/2 to Barnard's Star (lands in")),
        "{lines:?}"
    );
    assert!(lines.contains(&"> Arrived at Barnard's Star"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("> Entering jump 2/2 to Ross 154")),
        "{lines:?}"
    );
    assert_eq!(
        &lines[lines.len() - 2..],
        ["> Arrived at Ross 154", "> no other players in system"]
    );

    // Bob follows with FROM given; he finds Ann there.
    let trip = bob.run(&["travel", "sol", "ross 154"]).ok();
    assert!(
        trip.stdout
            .ends_with("> Arrived at Ross 154\n> 1 other player in system\n"),
        "{trip:?}"
    );

    let scan = bob.run(&["scan"]).ok();
    assert!(
        scan.stdout
            .starts_with("Ross 154: 1 other player in system\nAnn, Bob Two\n"),
        "{scan:?}"
    );
    let scan = bob.run(&["scan", "--json"]).ok().json();
    assert_eq!(scan["population"], 2);
    assert_eq!(scan["others"], 1);

    let me = ann.run(&["status", "--json"]).ok().json();
    assert_eq!(me["system"], "Ross 154");
    assert!(
        me["player"]["fuel"].as_u64().unwrap() < 40,
        "jumps burn fuel: {me}"
    );

    let systems = ann.run(&["systems", "--json"]).ok().json();
    let ross = systems
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Ross 154")
        .unwrap();
    assert_eq!(ross["population"], 2);
    let human = ann.run(&["systems"]).ok();
    assert!(human.stdout.contains("Sol (home)"), "{human:?}");

    // A trip in JSON: one object with every hop and the population.
    let trip = ann.run(&["travel", "--json", "Barnard's Star"]).ok().json();
    assert_eq!(trip["system"], "Barnard's Star");
    assert_eq!(trip["jumps"], 1);
    assert_eq!(trip["others"], 0);
    assert!(trip["hops"][0]["xfer"]
        .as_str()
        .unwrap()
        .starts_with("ross-154:"));

    let refuel = ann.run(&["refuel", "3"]).ok();
    assert!(
        refuel.stdout.starts_with("Bought 3 fuel for 6 cr"),
        "{refuel:?}"
    );
    let refuel = ann.run(&["refuel", "--json"]).ok().json();
    assert_eq!(refuel["fuel"], refuel["fuel_capacity"]);
    let full = ann.run(&["refuel", "--json"]);
    assert_eq!(full.code, 1);
    assert_eq!(full.json()["error"]["code"], "tank_full");
    let bad = ann.run(&["refuel", "1000"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("between 1 and 40"), "{bad:?}");
    let bad = ann.run(&["refuel", "--", "-5"]);
    assert_eq!(bad.code, 2, "a negative quantity is a usage error: {bad:?}");

    // The history: the player's own log, oldest first.
    let history = ann.run(&["history", "--json"]).ok().json();
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"join"), "{history}");
    assert!(kinds.contains(&"arrive"), "{history}");
}

#[test]
fn refused_trips_say_why_and_exit_1() {
    let server = Server::start(&[]);
    let ann = Player::join(&server, "Ann");

    let typo = ann.run(&["travel", "Alpha Centaur"]);
    assert_eq!(typo.code, 1);
    assert!(
        typo.stderr.contains("did you mean 'Alpha Centauri'?"),
        "{typo:?}"
    );
    let typo = ann.run(&["travel", "--json", "Alpha Centaur"]);
    assert_eq!(typo.json()["error"]["code"], "unknown_system");

    let elsewhere = ann.run(&["travel", "Vega", "Sol"]);
    assert_eq!(elsewhere.code, 1);
    assert!(
        elsewhere.stderr.contains("you are in Sol, not Vega"),
        "{elsewhere:?}"
    );
    assert!(
        !elsewhere.stdout.contains("Route"),
        "no route shown for a refused trip: {elsewhere:?}"
    );

    let no_lane = ann.run(&["travel", "--direct", "Vega"]);
    assert_eq!(no_lane.code, 1);
    assert!(
        no_lane.stderr.contains("no jump lane from Sol to Vega"),
        "{no_lane:?}"
    );

    let here = ann.run(&["travel", "--json", "Sol"]);
    assert_eq!(here.code, 1);
    assert_eq!(here.json()["error"]["code"], "same_system");

    // Vega is 83 fuel away, the tank holds 40: the trip stops where the fuel runs out.
    let far = ann.run(&["travel", "Vega"]);
    assert_eq!(far.code, 1, "{far:?}");
    assert!(far.stderr.contains("not enough fuel"), "{far:?}");
    assert!(
        far.stdout.contains("> Arrived at"),
        "some hops were made: {far:?}"
    );
    // With --refuel the trip buys what it needs and gets there.
    let far = ann.run(&["travel", "--refuel", "Vega"]).ok();
    assert!(far.stdout.contains("> Refueled:"), "{far:?}");
    assert!(
        far.stdout
            .ends_with("> Arrived at Vega\n> no other players in system\n"),
        "{far:?}"
    );
}

#[test]
fn travelling_while_in_a_jump_is_refused() {
    // Slow jumps: 4.4 ly at 50 ticks per light year and 50 Hz is about 4.4 s.
    let server = Server::start(&["--ticks-per-ly", "50"]);
    let ann = Player::join(&server, "Ann");
    let go = ann.run(&["travel", "--no-wait", "Alpha Centauri"]).ok();
    assert!(
        go.stdout.contains("Entering jump to Alpha Centauri"),
        "{go:?}"
    );
    let again = ann.run(&["travel", "Sol"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("you are in a jump to Alpha Centauri"),
        "{again:?}"
    );
    let status = ann.run(&["status"]).ok();
    assert!(
        status
            .stdout
            .contains("in a jump from Sol to Alpha Centauri, lands in"),
        "{status:?}"
    );
    let refuel = ann.run(&["refuel", "--json"]);
    assert_eq!(refuel.code, 1);
    assert_eq!(refuel.json()["error"]["code"], "in_jump");
    let multi = ann.run(&["travel", "--no-wait", "Vega"]);
    assert!(multi.code == 1 || multi.code == 2, "{multi:?}");
}

#[test]
fn without_a_server_the_client_exits_3_and_says_how_to_start_one() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let ann = Player::new(&url, "Ann");
    let join = ann.run(&["join", "Ann"]);
    assert_eq!(join.code, 3, "{join:?}");
    assert!(
        join.stderr
            .contains(&format!("cannot reach the galaxy at {url}")),
        "{join:?}"
    );
    assert!(
        join.stderr.contains("start it with `mltrader serve`"),
        "{join:?}"
    );
    let systems = ann.run(&["systems", "--json"]);
    assert_eq!(systems.code, 3);
    assert_eq!(systems.json()["error"]["code"], "unreachable");
}

#[test]
fn tokens_come_from_the_saved_file_or_the_environment() {
    let server = Server::start(&[]);
    let nobody = Player::new(server.url(), "nobody");
    let no_token = nobody.run(&["status"]);
    assert_eq!(no_token.code, 2, "{no_token:?}");
    assert!(
        no_token
            .stderr
            .contains("join first with `mltrader join NAME`"),
        "{no_token:?}"
    );

    let ann = Player::join(&server, "Ann");
    let again = ann.run(&["join", "Ann Again"]);
    assert_eq!(
        again.code, 2,
        "a saved token is not replaced silently: {again:?}"
    );
    assert!(again.stderr.contains("--force"), "{again:?}");

    // Someone else's machine, with Ann's token in the environment, acts as Ann.
    let borrowed = Player::new(server.url(), "x").env("MLTRADER_TOKEN", &ann.token());
    let me = borrowed.run(&["status", "--json"]).ok().json();
    assert_eq!(me["name"], "Ann");

    let taken = Player::new(server.url(), "y").run(&["join", "--json", "Ann"]);
    assert_eq!(taken.code, 1);
    assert_eq!(taken.json()["error"]["code"], "name_taken");

    let stale = Player::new(server.url(), "z").env("MLTRADER_TOKEN", "mlt_0000");
    let refused = stale.run(&["status"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("unknown token"), "{refused:?}");

    let bad_url = ann.run_at("ftp://example.org", &["status"]);
    assert_eq!(bad_url.code, 2, "{bad_url:?}");
}
