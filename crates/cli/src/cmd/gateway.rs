//! `sallyport gateway`: run the BFF in front of an upstream app, or `--check` a
//! configuration and exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Options of `sallyport gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TOML configuration file (see config/gateway.example.toml). Environment variables
    /// `SALLYPORT_GATEWAY_*` and `SESSION_SECRET` override it. `SIGHUP` reads it again and
    /// applies it without dropping connections (docs/operations.md, "Reloading the
    /// configuration").
    #[arg(short, long, env = "SALLYPORT_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print a summary and exit (status 0 when valid).
    #[arg(long)]
    pub check: bool,
    /// Listen address, overriding `listen` from the configuration.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Admin listener address (`{prefix}/verify`, `/healthz`, `/readyz`, `/metrics`),
    /// overriding `admin.listen`. Keep it unreachable from browsers.
    #[arg(long)]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Upstream URL, overriding `upstream` from the configuration.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Event loops serving the public listener, each a single-threaded runtime on a
    /// thread of its own that keeps the connections it accepts (like nginx's worker
    /// processes: no cross-thread wake-ups). Default: one per core.
    #[arg(long, env = "SALLYPORT_GATEWAY_THREADS")]
    pub threads: Option<usize>,
}

/// Where the configuration comes from: read at start-up and again on every `SIGHUP`, so
/// a reload sees the same file, environment and command-line overrides.
#[derive(Clone)]
struct Source {
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    admin_listen: Option<std::net::SocketAddr>,
    upstream: Option<String>,
}

impl Source {
    fn load(&self) -> Result<sallyport_gateway::Config, sallyport_gateway::Error> {
        let mut config = sallyport_gateway::Config::load(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.admin.listen = admin;
        }
        if let Some(upstream) = &self.upstream {
            config.upstream.clone_from(upstream);
        }
        Ok(config)
    }
}

/// Runs the gateway until Ctrl-C / SIGTERM; `SIGHUP` reloads the configuration.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = Source {
        config: args.config,
        listen: args.listen,
        admin_listen: args.admin_listen,
        upstream: args.upstream,
    };
    let config = source.load()?;
    let settings = config.validate()?;
    if args.check {
        let admin = settings
            .admin_listen()
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        println!(
            "configuration OK: listening on {}, admin listener {admin}, routes under {}, cookie {:?}",
            settings.listen(),
            settings.prefix(),
            settings.cookie_name()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let threads = match args.threads {
        None | Some(0) => std::thread::available_parallelism().map_or(1, usize::from),
        Some(n) => n,
    };
    // The first event loop (which also runs the admin listener, reloads and background
    // work) on a blocking thread of the CLI's runtime, so that the CLI's is not blocked.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve(settings, source, threads))
    })
    .await??;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    settings: sallyport_gateway::Settings,
    source: Source,
    threads: usize,
) -> anyhow::Result<()> {
    // First, on the runtime that serves: from here on SIGHUP no longer ends the process
    // (its default action); one received during start-up is applied once it serves.
    #[cfg(unix)]
    let hangups = super::hangups()?;
    // One socket per event loop (SO_REUSEPORT), each registered by its loop's runtime.
    let listeners = sallyport_gateway::bind(settings.listen(), threads)
        .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen()))?;
    let admin = match settings.admin_listen() {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (setting `admin.listen`)"))?,
        ),
        None => None,
    };
    let gateway = sallyport_gateway::Gateway::new(settings).await?;
    #[cfg(unix)]
    let reloader =
        sallyport_gateway::reload_on_sighup(hangups, gateway.clone(), move || source.load());
    #[cfg(not(unix))]
    drop(source);
    if let Some(first) = listeners.first() {
        tracing::info!(addr = %first.local_addr()?, threads, "sallyport gateway listening");
    }
    if let Some(admin) = &admin {
        let addr = admin.local_addr()?;
        tracing::info!(%addr, "admin listener (verify, healthz, readyz, metrics) listening");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "admin.listen is not a loopback address: its verify route answers with access tokens, \
                 so make sure browsers cannot reach it (firewall, private network)"
            );
        }
    }
    let served = sallyport_gateway::serve(listeners, admin, gateway).await;
    #[cfg(unix)]
    reloader.abort();
    served?;
    Ok(())
}
