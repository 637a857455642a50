//! Subcommands. One module per subcommand group; shared helpers live here.

use std::future::Future;
use std::process::ExitCode;

pub(crate) mod admin;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod gateway;
pub(crate) mod issuer;
pub(crate) mod man;
pub(crate) mod seal;

/// Runs an async subcommand on a multi-threaded tokio runtime.
pub(crate) fn run_async<F>(fut: F) -> anyhow::Result<ExitCode>
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
pub(crate) fn hangups() -> anyhow::Result<tokio::signal::unix::Signal> {
    use anyhow::Context as _;
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler (configuration reload)")
}
