//! `sallyport seal` / `sallyport unseal` (being built with crates/iron).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SealArgs {}
#[derive(Debug, clap::Args)]
pub struct UnsealArgs {}

pub fn seal(_a: SealArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn unseal(_a: UnsealArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
