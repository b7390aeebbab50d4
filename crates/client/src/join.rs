//! `mltrader join NAME`: registers a new player (who starts in the home system) and saves
//! their token for the other commands.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{token, ClientOpts, Failure, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct JoinArgs {
    /// Your player name (1 to 48 characters; spaces inside are fine).
    pub name: String,
    /// Replace the token saved by an earlier join (that player's token is then lost, unless
    /// you copied it).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let opts = args.opts.clone();
    super::run(&opts, |api| async move {
        if !args.force {
            if let Some(p) = token::saved()? {
                return Err(Failure::local(
                    "token_saved",
                    format!(
                        "a token is saved already in {}: `mltrader join --force {}` replaces it \
                         (copy the file first to keep that player)",
                        p.display(),
                        args.name
                    ),
                ));
            }
        }
        let joined: ::api::Joined = api
            .post_public(
                "/v1/join",
                &::api::JoinRequest {
                    name: args.name.clone(),
                },
            )
            .await?;
        let path = token::save(&joined.token)?;
        let fuel = joined.player.fuel;
        let capacity = joined.player.fuel_capacity;
        let credits = joined.player.credits;
        Ok(Output {
            human: Some(format!(
                "Welcome, {}! You are in {} with {fuel}/{capacity} fuel and {credits} cr.\n\
                 Your token is saved in {} (keep it secret; {} overrides it).\n",
                joined.name,
                joined.system,
                path.display(),
                token::ENV_TOKEN
            )),
            json: json!({
                "name": joined.name,
                "system": joined.system,
                "player": super::json_of(&joined.player),
                "token": joined.token,
                "token_file": path,
            }),
        })
    })
}
