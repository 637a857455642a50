//! `sallyport issuer` (being built; see the issue that owns it).

use std::process::ExitCode;

/// Options of `sallyport issuer`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sallyport issuer is not built yet")
}
