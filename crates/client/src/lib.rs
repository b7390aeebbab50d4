//! The player's commands (`join`, `travel`, `status`, `systems`, `scan`, `history`, `refuel`,
//! `market`, `buy`/`sell`, `economy`, `attack`, `wrecks`, `loot`): thin clients of the HTTP API,
//! one file each, sharing the connection, the token and the way results and errors are printed.
//!
//! Human output by default, `--json` (one JSON object on stdout) for scripts. Exit codes
//! ([`EXIT_REFUSED`] and the others) let scripts tell a refusal from a server that is down.
//! Never talks to the mesh or the data directory: everything goes through the API.

pub mod api;
pub mod attack;
pub mod economy;
pub mod follow;
pub mod history;
pub mod join;
pub mod loot;
pub mod market;
pub mod refuel;
pub mod repair;
pub mod scan;
pub mod status;
pub mod systems;
pub mod token;
pub mod trade;
pub mod travel;
pub mod wrecks;

use std::future::Future;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

pub use api::Api;

/// Where the galaxy is, unless `--server` or [`ENV_SERVER`] says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";
/// Environment variable: the server URL, or several separated by commas.
pub const ENV_SERVER: &str = "MLTRADER_SERVER";

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the game refused (an HTTP 4xx: unknown system, no fuel, in a jump, ...).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: a usage or local problem (bad arguments, no token saved, token file unwritable).
pub const EXIT_LOCAL: u8 = 2;
/// Exit code: the galaxy cannot serve now (unreachable, timed out, or a 5xx): try again later.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: an action was sent and its answer lost (the node died or the connection broke
/// after the request left): it may or may not have been done. Look (`mltrader status`) before
/// doing it again; the client never sends it twice by itself.
pub const EXIT_OUTCOME_UNKNOWN: u8 = 4;

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 refused by the game (HTTP 4xx: unknown \
system, no fuel, in a jump...); 2 usage or local problem (arguments, token file); 3 the galaxy \
cannot serve now (unreachable, timed out, 5xx; with several --server URLs, none served within \
30 s): retry later; 4 outcome unknown (the action was sent and its answer lost): look with \
`mltrader status` before doing it again.";

/// Options every client command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientOpts {
    /// URL of the galaxy's API, or the URLs of its nodes separated by commas (the client
    /// follows the one serving) [env: MLTRADER_SERVER] [default: http://127.0.0.1:7878]
    #[arg(long, value_name = "URL[,URL...]")]
    pub server: Option<String>,
    /// Print one JSON object on stdout (errors too), for scripts.
    #[arg(long)]
    pub json: bool,
}

impl ClientOpts {
    /// The server URL or URLs as given (`--server`, else [`ENV_SERVER`], else
    /// [`DEFAULT_SERVER`]), without trailing slashes.
    pub fn server_url(&self) -> String {
        let url = self
            .server
            .clone()
            .or_else(|| {
                std::env::var(ENV_SERVER)
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        url.split(',')
            .map(|u| u.trim().trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server URLs, checked ([`follow::parse_urls`]).
    pub fn server_urls(&self) -> Result<Vec<String>, Failure> {
        follow::parse_urls(&self.server_url()).map_err(|m| Failure::local("bad_server", m))
    }
}

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The game refused (4xx, or 501: the server does not offer it): its code and message.
    Refused { code: String, message: String },
    /// The server is unreachable, timed out, or failed (5xx).
    Unreachable { code: String, message: String },
    /// A problem on this side: usage, token file.
    Local { code: String, message: String },
    /// An action was sent and its answer lost: done or not, nobody here knows.
    OutcomeUnknown { message: String },
}

impl Failure {
    pub fn local(code: &str, message: impl Into<String>) -> Failure {
        Failure::Local {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn refused(code: &str, message: impl Into<String>) -> Failure {
        Failure::Refused {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } => EXIT_REFUSED,
            Failure::Local { .. } => EXIT_LOCAL,
            Failure::Unreachable { .. } => EXIT_UNREACHABLE,
            Failure::OutcomeUnknown { .. } => EXIT_OUTCOME_UNKNOWN,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Failure::Refused { code, .. }
            | Failure::Unreachable { code, .. }
            | Failure::Local { code, .. } => code,
            Failure::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Refused { message, .. }
            | Failure::Unreachable { message, .. }
            | Failure::Local { message, .. }
            | Failure::OutcomeUnknown { message } => message,
        }
    }
}

/// What a command prints when it succeeds.
pub struct Output {
    /// For people (None: the command printed as it went).
    pub human: Option<String>,
    /// For scripts (`--json`).
    pub json: Value,
}

/// Runs a client command on a small runtime of its own and prints its result or its error;
/// the exit code says which ([`EXIT_OK`], [`EXIT_REFUSED`], [`EXIT_LOCAL`],
/// [`EXIT_UNREACHABLE`], [`EXIT_OUTCOME_UNKNOWN`]).
pub fn run<F, Fut>(opts: &ClientOpts, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Api) -> Fut,
    Fut: Future<Output = Result<Output, Failure>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = Api::new(opts).and_then(|api| runtime.block_on(command(api)));
    Ok(ExitCode::from(report(opts, result)))
}

/// Prints a command's result; returns its exit code.
fn report(opts: &ClientOpts, result: Result<Output, Failure>) -> u8 {
    match result {
        Ok(out) => {
            if opts.json {
                println!("{}", out.json);
            } else if let Some(text) = out.human {
                print!("{text}");
                if !text.ends_with('\n') && !text.is_empty() {
                    println!();
                }
            }
            EXIT_OK
        }
        Err(f) => {
            if opts.json {
                println!(
                    "{}",
                    json!({"error": {"code": f.code(), "message": f.message()}, "exit": f.exit_code()})
                );
            } else {
                eprintln!("error: {}", f.message());
            }
            f.exit_code()
        }
    }
}

/// "1 other player", "no other players", "47 other players".
pub fn others_line(others: usize) -> String {
    match others {
        0 => "no other players in system".to_string(),
        1 => "1 other player in system".to_string(),
        n => format!("{n} other players in system"),
    }
}

/// A duration for people: "350 ms", "4.4 s", "2 min 5 s".
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// An answer as `--json` prints it: the server's JSON, read into its wire type and written
/// back (the `api` crate's tests show that the two are the same JSON).
pub fn json_of<T: serde::Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).expect("BUG: a wire type always serializes")
}

/// Goods and their units for people, in the goods' order: "ore 10, food 3", or "empty".
pub fn cargo_text<'a>(cargo: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let cargo: std::collections::BTreeMap<&str, u32> = cargo.into_iter().collect();
    let items: Vec<String> = sim::goods::Good::ALL
        .iter()
        .filter_map(|g| {
            let qty = *cargo.get(g.name())?;
            (qty > 0).then(|| format!("{} {qty}", g.name()))
        })
        .collect();
    if items.is_empty() {
        "empty".to_string()
    } else {
        items.join(", ")
    }
}

/// "hold 20/60" for a player (hold units used of the hold's size).
pub fn hold_text(player: &::api::Player) -> String {
    format!("hold {}/{}", player.hold_used, player.hold)
}

/// Goods by name and their units, as pairs for [`cargo_text`].
pub fn units(goods: &std::collections::BTreeMap<String, u32>) -> impl Iterator<Item = (&str, u32)> {
    goods.iter().map(|(g, u)| (g.as_str(), *u))
}
