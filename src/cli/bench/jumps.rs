//! `mltrader bench jumps` (being written).

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct JumpsArgs {
    /// Run size.
    #[arg(long, value_enum, default_value_t = super::Size::Small)]
    pub size: super::Size,
}

pub fn run(_args: JumpsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
