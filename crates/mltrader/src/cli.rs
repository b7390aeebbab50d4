//! The `mltrader` command line: one module a subcommand, each a thin shell over the libraries.
//! Human output by default, `--json` for scripts; errors say what to do next.

pub mod check;
pub mod common;
pub mod compact;
pub mod economy;
pub mod export;
pub mod export_jumps;
pub mod region;
pub mod replay;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mltrader: a space trading game whose server mesh is made of durable, greppable text logs.
#[derive(Parser, Debug)]
#[command(name = "mltrader", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of `serve`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the galaxy: recover the data directory, start every system's shard, serve the API.
    Serve(serve::ServeArgs),
    /// Verify every file of a data directory: checksums, sequences, and the mesh's invariants.
    Check(check::CheckArgs),
    /// Rebuild every system's state from its logs and print the state hashes and speed.
    Replay(replay::ReplayArgs),
    /// Move the log segments behind each snapshot into archive/ (server stopped).
    Compact(compact::CompactArgs),
    /// Write a JetStream galaxy's logs, snapshots and players' logs as a data directory
    /// (resumable; --follow: a live backup), checking that no zombie's message was accepted.
    Export(export::ExportArgs),
    /// Regions (issue 20): each region's systems, links and copies (`status`), make the copies
    /// (`copy`), and take over a lost region's systems from the copy (`promote`).
    Region(region::RegionArgs),
    /// Join the galaxy as a new player (you start in the home system; your token is saved).
    Join(client::join::JoinArgs),
    /// Travel to a system, jump by jump along the shortest route.
    Travel(client::travel::TravelArgs),
    /// Your player: where you are (or your jump), fuel, credits, hull, hold and cargo.
    Status(client::status::StatusArgs),
    /// The map: every system, its lanes and its population.
    Systems(client::systems::SystemsArgs),
    /// Who is in your system.
    Scan(client::scan::ScanArgs),
    /// Your own past events.
    History(client::history::HistoryArgs),
    /// Buy fuel at your system's station (a full tank, or UNITS).
    Refuel(client::refuel::RefuelArgs),
    /// Mend your ship's hull at the station (5 cr a hull point)
    Repair(client::repair::RepairArgs),
    /// Your system's market, live, and the prices heard from other systems (or, with SYSTEM,
    /// that system's as last heard).
    Market(client::market::MarketArgs),
    /// Buy GOOD at your system's market.
    Buy(client::trade::TradeArgs),
    /// Sell GOOD at your system's market.
    Sell(client::trade::TradeArgs),
    /// The galaxy's economy: where each good is cheapest and dearest, and how old the figures
    /// are; with --report, where credits and goods came from and went, from the logs.
    Economy(client::economy::EconomyArgs),
    /// Fire at a player in your system until one ship is destroyed or leaves (--cease to stop).
    Attack(client::attack::AttackArgs),
    /// The wrecks in your system and their cargo.
    Wrecks(client::wrecks::WrecksArgs),
    /// Take the cargo of a wreck in your system (default: the oldest).
    Loot(client::loot::LootArgs),
    /// Run trader bots that play through the API and learn which routes pay.
    Swarm(swarm::SwarmArgs),
}

/// Parses the command line and runs the command; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MLTRADER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Check(a) => check::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Compact(a) => compact::run(a),
        Command::Export(a) => export::run(a),
        Command::Region(a) => region::run(a),
        Command::Join(a) => client::join::run(a),
        Command::Travel(a) => client::travel::run(a),
        Command::Status(a) => client::status::run(a),
        Command::Systems(a) => client::systems::run(a),
        Command::Scan(a) => client::scan::run(a),
        Command::History(a) => client::history::run(a),
        Command::Refuel(a) => client::refuel::run(a),
        Command::Repair(a) => client::repair::run(a),
        Command::Market(a) => client::market::run(a),
        Command::Buy(a) => client::trade::buy(a),
        Command::Sell(a) => client::trade::sell(a),
        Command::Economy(a) if a.report => economy::run(a),
        Command::Economy(a) => client::economy::run(a),
        Command::Attack(a) => client::attack::run(a),
        Command::Wrecks(a) => client::wrecks::run(a),
        Command::Loot(a) => client::loot::run(a),
        Command::Swarm(a) => swarm::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
