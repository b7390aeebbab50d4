//! `mltrader attack PLAYER`: sets a standing order to fire at another player in the same
//! system, then follows the fight: hull changes on both sides (polling `GET /v1/me` five times
//! a second) until one ship is destroyed (told by the event stream) or the order ends, or
//! `--wait-s` passes. `--no-wait` returns once the order is set; `--cease` ceases fire.
//!
//! ```text
//! > Firing at Bob every tick (your hull 100)
//! > Bob's hull: 64
//! > Bob's ship was destroyed; its cargo is wreck #0: `mltrader loot 0`
//! ```
//!
//! Never fires by itself: the order stands in the shard, which fires it every tick; leaving
//! the command (Ctrl-C, timeout) does not cease fire.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ::api::{AttackRequest, Attacking, Me, StreamEvent};
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{json_of, Api, ClientOpts, Failure, Output};

/// How often the fight is looked at.
const POLL_EVERY_MS: u64 = 200;
/// How long to wait for news of a destruction once the order has ended.
const END_NEWS_WAIT_MS: u64 = 2_000;
/// How long to wait for the event stream's first event before setting the order.
const STREAM_OPEN_WAIT_MS: u64 = 2_000;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct AttackArgs {
    /// The player to fire at (in your system; `mltrader scan` lists them).
    #[arg(required_unless_present = "cease", conflicts_with = "cease")]
    pub player: Option<String>,
    /// Cease fire.
    #[arg(long)]
    pub cease: bool,
    /// Return once the order is set, without following the fight.
    #[arg(long, conflicts_with = "cease")]
    pub no_wait: bool,
    /// Follow the fight at most this many seconds (the order stands afterwards).
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub wait_s: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: AttackArgs) -> anyhow::Result<ExitCode> {
    let opts = args.opts.clone();
    super::run(&opts, |api| async move {
        match args.player.clone() {
            Some(target) if !args.cease => attack(api, target, args).await,
            _ => cease(api).await,
        }
    })
}

async fn cease(api: Api) -> Result<Output, Failure> {
    let r: Attacking = api
        .post("/v1/attack", &AttackRequest { target: Some(None) })
        .await?;
    Ok(Output {
        human: Some("Ceased fire\n".to_string()),
        json: json_of(&r),
    })
}

/// How a fight followed by the command ended.
enum Outcome {
    /// The target's ship was destroyed (by `by`), its cargo in `wreck`.
    Won { by: String, wreck: Option<u64> },
    /// The player's own ship was destroyed.
    Lost { by: String, wreck: Option<u64> },
    /// The order ended without news of a destruction: the target left, or the order was
    /// changed elsewhere.
    Ended,
    /// Still fighting when the time was up.
    Timeout,
}

async fn attack(api: Api, target: String, args: AttackArgs) -> Result<Output, Failure> {
    let quiet = args.opts.json;
    let say = |text: &str| {
        if !quiet {
            println!("> {text}");
        }
    };
    // Listen before firing, so that no destruction is missed (and follow the fight without
    // the stream if the server will not open one).
    let mut events = if args.no_wait {
        None
    } else {
        open_events(&api).await
    };
    let body = AttackRequest {
        target: Some(Some(target.clone())),
    };
    let r: Attacking = api.post("/v1/attack", &body).await?;
    let me_name = r.player.name.clone();
    let mut hull = r.player.hull;
    say(&format!("Firing at {target} every tick (your hull {hull})"));
    if args.no_wait {
        return Ok(Output {
            human: None,
            json: json_of(&r),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_s);
    let mut target_hull = None;
    let mut last_me = r.player;
    let outcome = loop {
        if let Some(o) = news(&mut events, &me_name, &target, Duration::ZERO).await {
            break o;
        }
        if Instant::now() >= deadline {
            break Outcome::Timeout;
        }
        let me: Me = api.get("/v1/me").await?;
        if let Some(p) = me.player {
            if p.hull != hull {
                say(&format!("Your hull: {}", p.hull));
                hull = p.hull;
            }
            last_me = p;
        }
        let aim = me.attacking.filter(|a| a.target == target);
        let still_aiming = aim.is_some();
        if let Some(th) = aim.map(|a| a.hull) {
            if target_hull != Some(th) {
                if target_hull.is_some() || th < 100 {
                    say(&format!("{target}'s hull: {th}"));
                }
                target_hull = Some(th);
            }
        }
        if !still_aiming || me.system.is_none() {
            let wait = Duration::from_millis(END_NEWS_WAIT_MS);
            break news(&mut events, &me_name, &target, wait)
                .await
                .unwrap_or(Outcome::Ended);
        }
        tokio::time::sleep(Duration::from_millis(POLL_EVERY_MS)).await;
    };
    let loot_hint = |wreck: Option<u64>| match wreck {
        Some(id) => format!("its cargo is wreck #{id}: `mltrader loot {id}`"),
        None => "it carried no cargo".to_string(),
    };
    let (name, text, by, wreck) = match &outcome {
        Outcome::Won { by, wreck } => {
            let by_whom = if *by == me_name {
                String::new()
            } else {
                format!(" by {by}")
            };
            (
                "won",
                format!(
                    "{target}'s ship was destroyed{by_whom}; {}",
                    loot_hint(*wreck)
                ),
                Some(by.clone()),
                *wreck,
            )
        }
        Outcome::Lost { by, wreck } => (
            "lost",
            format!(
                "Your ship was destroyed by {by}; you respawn at home with a basic ship{}",
                wreck.map_or(String::new(), |id| format!(" (your cargo is wreck #{id})"))
            ),
            Some(by.clone()),
            *wreck,
        ),
        Outcome::Ended => (
            "ended",
            format!("The fight is over: {target} is no longer here, or the order was changed"),
            None,
            None,
        ),
        Outcome::Timeout => (
            "timeout",
            format!(
                "Still firing at {target} after {} s; the order stands (`mltrader attack --cease` \
                 stops it)",
                args.wait_s
            ),
            None,
            None,
        ),
    };
    say(&text);
    Ok(Output {
        human: None,
        json: json!({
            "target": target,
            "outcome": name,
            "by": by,
            "wreck": wreck,
            "player": json_of(&last_me),
        }),
    })
}

/// The player's event stream, once its first event (`hello`) has come; None if the server
/// does not open one.
async fn open_events(api: &Api) -> Option<UnboundedReceiver<StreamEvent>> {
    let mut rx = api.events().await.ok()?;
    let wait = Duration::from_millis(STREAM_OPEN_WAIT_MS);
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Some(_hello)) => Some(rx),
        _ => None,
    }
}

/// The destruction of either ship, if the stream tells of one within `wait`.
async fn news(
    events: &mut Option<UnboundedReceiver<StreamEvent>>,
    me: &str,
    target: &str,
    wait: Duration,
) -> Option<Outcome> {
    let rx = events.as_mut()?;
    let until = tokio::time::Instant::now() + wait;
    loop {
        let next = match rx.try_recv() {
            Ok(e) => Some(e),
            Err(_) if tokio::time::Instant::now() >= until => None,
            Err(_) => tokio::time::timeout_at(until, rx.recv())
                .await
                .ok()
                .flatten(),
        };
        let StreamEvent::Destroyed {
            player, by, wreck, ..
        } = next?
        else {
            continue;
        };
        if player == target {
            return Some(Outcome::Won { by, wreck });
        }
        if player == me {
            return Some(Outcome::Lost { by, wreck });
        }
    }
}
