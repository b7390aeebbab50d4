//! `mltrader travel [FROM] TO`: travels to TO jump by jump along the shortest route, showing
//! each jump's progress and, at the end, who is there:
//!
//! ```text
//! > Entering jump to Alpha Centauri (lands in 4.4 s)...
//! > Arrived at Alpha Centauri
//! > 47 other players in system
//! ```
//!
//! With FROM, the server checks the player is there first ("you are in Vega, not Sol").
//! Never buys fuel unless asked (`--refuel`), and never sends a jump twice.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{human_ms, json_of, others_line, Api, ClientOpts, Failure, Output};
use ::api::{Landed, Me, RefuelRequest, Refueled, Route, TravelRequest, Traveled};

/// How often the time left is redrawn on a terminal.
const REDRAW_EVERY_MS: u64 = 100;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct TravelArgs {
    /// Where you are (checked) and where to go: `travel TO` or `travel FROM TO`.
    #[arg(value_name = "[FROM] TO", num_args = 1..=2, required = true)]
    pub systems: Vec<String>,
    /// Jump straight to TO (a neighbour) instead of following the route.
    #[arg(long)]
    pub direct: bool,
    /// Buy fuel on the way when the next jump needs more than the tank holds.
    #[arg(long)]
    pub refuel: bool,
    /// Return once the (single) jump is committed, without waiting for the landing.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// One jump to make: the system it goes to and the fuel it burns (0: not known, the server
/// checks).
struct Leg {
    to: String,
    fuel: u32,
}

pub fn run(args: TravelArgs) -> anyhow::Result<ExitCode> {
    let opts = args.opts.clone();
    super::run(&opts, |api| travel(api, args))
}

/// Prints lines for people as the trip goes (nothing in `--json` mode).
struct Screen {
    quiet: bool,
    tty: bool,
}

impl Screen {
    fn line(&self, text: &str) {
        if !self.quiet {
            println!("> {text}");
        }
    }
}

async fn travel(api: Api, args: TravelArgs) -> Result<Output, Failure> {
    let screen = Screen {
        quiet: args.opts.json,
        tty: std::io::stdout().is_terminal(),
    };
    let (from, to) = match args.systems.as_slice() {
        [to] => (None, to.clone()),
        [from, to] => (Some(from.clone()), to.clone()),
        _ => return Err(Failure::local("usage", "give TO, or FROM and TO")),
    };
    let me: Me = api.get("/v1/me").await?;
    let mut fuel = me.player.as_ref().map_or(0, |p| u64::from(p.fuel));
    if let Some(j) = &me.jumping {
        let eta = j
            .eta_ms
            .map(|ms| format!(" (lands in {})", human_ms(ms)))
            .unwrap_or_default();
        return Err(Failure::refused(
            "in_jump",
            format!(
                "you are in a jump to {}{eta}; wait for the landing (`mltrader status`)",
                j.to
            ),
        ));
    }
    let Some(here) = from.clone().or_else(|| me.system.clone()) else {
        return Err(Failure::refused(
            "unknown_player",
            "the server does not say where you are",
        ));
    };
    // Shown once the first jump is accepted (so a refused FROM is not preceded by a route).
    let mut route_line = None;
    let hops: Vec<Leg> = if args.direct {
        vec![Leg {
            to: to.clone(),
            fuel: 0,
        }]
    } else {
        let route: Route = api
            .get_public("/v1/route", &[("from", here.as_str()), ("to", to.as_str())])
            .await?;
        if route.hops.len() > 1 {
            let mut names = vec![route.from.clone()];
            names.extend(route.hops.iter().map(|h| h.to.clone()));
            route_line = Some(format!(
                "Route to {}: {} ({} jumps, {} fuel, {} in jumps)",
                route.to,
                names.join(" → "),
                route.hops.len(),
                route.fuel,
                human_ms(route.travel_ms)
            ));
        }
        if route.hops.is_empty() {
            // Already there: the server refuses with its own code (`same_system`).
            vec![Leg {
                to: to.clone(),
                fuel: 0,
            }]
        } else {
            route
                .hops
                .into_iter()
                .map(|h| Leg {
                    to: h.to,
                    fuel: h.fuel,
                })
                .collect()
        }
    };
    if args.no_wait && hops.len() > 1 {
        return Err(Failure::local(
            "usage",
            format!(
                "--no-wait makes one jump, and {to} is {} jumps away; travel to {} first",
                hops.len(),
                hops[0].to
            ),
        ));
    }
    let mut done = Vec::new();
    let mut last: Option<Landed> = None;
    let count = hops.len();
    for (i, hop) in hops.iter().enumerate() {
        if args.refuel && u64::from(hop.fuel) > fuel {
            // The travel's answer below says the fuel after the jump.
            let r: Refueled = api.post("/v1/refuel", &RefuelRequest::default()).await?;
            screen.line(&format!(
                "Refueled: {} units for {} cr",
                r.bought_units, r.cost_cr
            ));
        }
        let body = TravelRequest {
            to: hop.to.clone(),
            from: if i == 0 { from.clone() } else { None },
            wait: false,
        };
        let ack: Traveled = api.post("/v1/travel", &body).await?;
        if let Some(line) = route_line.take() {
            screen.line(&line);
        }
        fuel = u64::from(ack.player.fuel);
        let step = if count > 1 {
            format!(" {}/{count}", i + 1)
        } else {
            String::new()
        };
        let entering = format!("Entering jump{step} to {}", ack.to);
        if args.no_wait {
            screen.line(&format!(
                "{entering} (lands in {}); not waiting",
                human_ms(ack.travel_ms)
            ));
            return Ok(Output {
                human: None,
                json: json!({"xfer": ack.xfer, "to": ack.to, "travel_ms": ack.travel_ms, "player": json_of(&ack.player)}),
            });
        }
        let landed = wait_with_progress(&api, &screen, &entering, ack.travel_ms).await?;
        if landed.system != ack.to {
            return Err(Failure::refused(
                "jump_cancelled",
                format!(
                    "the jump to {} was cancelled; you are in {}",
                    ack.to, landed.system
                ),
            ));
        }
        screen.line(&format!("Arrived at {}", landed.system));
        done.push(json!({
            "xfer": ack.xfer,
            "to": ack.to,
            "travel_ms": ack.travel_ms,
            "fuel_left": fuel,
            "landed": {"system": landed.system, "population": landed.population, "others": landed.others},
        }));
        last = Some(landed);
    }
    let Some(last) = last else {
        return Err(Failure::local("usage", "nowhere to go"));
    };
    screen.line(&others_line(last.others));
    Ok(Output {
        human: None,
        json: json!({
            "from": here,
            "to": last.system,
            "jumps": done.len(),
            "hops": done,
            "system": last.system,
            "population": last.population,
            "others": last.others,
        }),
    })
}

/// Waits for the landing while showing the time left: a redrawn line on a terminal, one line
/// otherwise.
async fn wait_with_progress(
    api: &Api,
    screen: &Screen,
    entering: &str,
    travel_ms: u64,
) -> Result<Landed, Failure> {
    let due = Instant::now() + Duration::from_millis(travel_ms);
    if screen.quiet {
        return api.landing().await;
    }
    if !screen.tty {
        screen.line(&format!("{entering} (lands in {})...", human_ms(travel_ms)));
        return api.landing().await;
    }
    let landing = api.landing::<Landed>();
    tokio::pin!(landing);
    let mut redraw = tokio::time::interval(Duration::from_millis(REDRAW_EVERY_MS));
    let mut out = std::io::stdout();
    let result = loop {
        tokio::select! {
            r = &mut landing => break r,
            _ = redraw.tick() => {
                let left = due.saturating_duration_since(Instant::now()).as_millis() as u64;
                let _ = write!(out, "\r\x1b[2K> {entering}... {} left", human_ms(left));
                let _ = out.flush();
            }
        }
    };
    let _ = writeln!(out, "\r\x1b[2K> {entering}...");
    result
}
