//! `sallyport demo` (being built; see the issue that owns it).

use std::process::ExitCode;

/// Options of `sallyport demo`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sallyport demo is not built yet")
}
