//! Subcommands. One module per subcommand group; shared helpers live here.

use std::future::Future;
use std::process::ExitCode;

pub mod admin;
pub mod completions;
pub mod demo;
pub mod gateway;
pub mod issuer;
pub mod man;
pub mod seal;

/// Runs an async subcommand on a multi-threaded tokio runtime.
pub fn run_async<F>(fut: F) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(fut)
}

/// The `SIGHUP` stream that `sallyport gateway` and `sallyport issuer` reload on. Created
/// first thing at start-up: once it exists the signal no longer ends the process.
#[cfg(unix)]
pub fn hangups() -> anyhow::Result<tokio::signal::unix::Signal> {
    use anyhow::Context as _;
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler (configuration reload)")
}
