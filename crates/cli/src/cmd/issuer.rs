//! `sallyport issuer`: runs the token issuer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sallyport_issuer::{Config, Issuer, config::redact_url};

/// Options of `sallyport issuer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TOML configuration file (see config/issuer.example.toml); `SALLYPORT_ISSUER_*`
    /// environment variables override it. `SIGHUP` reads it again and applies what can
    /// change without a restart (clients, trusted proxies, lifetimes; docs/operations.md).
    #[arg(long, short, env = "SALLYPORT_ISSUER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Loads the configuration, opens the database (migrating, creating the first signing
/// key), listens and serves until SIGINT/SIGTERM; `SIGHUP` reloads the configuration.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // First of all: from here on SIGHUP no longer ends the process (its default action);
    // one received while the database is opened is applied once the issuer serves.
    #[cfg(unix)]
    let hangups = super::hangups()?;
    let path = args.config;
    let config = Config::load(path.as_deref())?;
    let settings = config.validate()?;
    let db = redact_url(&config.database_url);
    let issuer = Issuer::open(config)
        .await
        .with_context(|| format!("opening {db}"))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("invalid setting `listen`: cannot bind {}", settings.listen))?;
    #[cfg(unix)]
    let reloader = sallyport_issuer::reload_on_sighup(hangups, issuer.clone(), move || {
        Config::load(path.as_deref())
    });
    tracing::info!(addr = %listener.local_addr()?, database = %db, issuer = %settings.issuer, "sallyport issuer listening");
    let served = sallyport_issuer::serve(listener, issuer.clone()).await;
    #[cfg(unix)]
    reloader.abort();
    served?;
    // In-flight requests have finished: close the pool so SQLite checkpoints its WAL.
    issuer.close().await;
    Ok(ExitCode::SUCCESS)
}
