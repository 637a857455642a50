//! `sallyport demo`: issuer, demo app and gateway on loopback, in one process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sallyport_demo::{DemoOptions, Flow, RunningDemo};

/// How the browser signs in (`--flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowArg {
    /// OpenID Connect authorization-code flow with PKCE: sign in on the issuer's own
    /// page; the gateway is a relying party of the issuer, and `sallyport session
    /// revoke` reaches it at once by back-channel logout.
    Code,
    /// The article's flow: the gateway's login form posts the password to the issuer's
    /// JSON API; a revoked session ends at the next renewal.
    Password,
}

impl From<FlowArg> for Flow {
    fn from(f: FlowArg) -> Flow {
        match f {
            FlowArg::Code => Flow::Code,
            FlowArg::Password => Flow::Password,
        }
    }
}

/// Options of `sallyport demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory for the issuer's SQLite database, the session secret, the gateway's
    /// client secret, the issuer's settings (`issuer.toml`, for `sallyport session
    /// revoke --config`) and the demo login; a second run reuses it.
    #[arg(
        long,
        env = "SALLYPORT_DEMO_DATA_DIR",
        default_value = "sallyport-demo-data"
    )]
    pub data_dir: PathBuf,
    /// Port of the gateway, the URL to open (0 picks a free port).
    #[arg(long, env = "SALLYPORT_DEMO_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Port of the issuer (0 picks a free port).
    #[arg(long, env = "SALLYPORT_DEMO_ISSUER_PORT", default_value_t = 0)]
    pub issuer_port: u16,
    /// Port of the demo app (0 picks a free port).
    #[arg(long, env = "SALLYPORT_DEMO_APP_PORT", default_value_t = 0)]
    pub app_port: u16,
    /// Access-token lifetime in seconds: short, so that renewal is visible.
    #[arg(long, env = "SALLYPORT_DEMO_ACCESS_TOKEN_TTL", default_value_t = 30)]
    pub access_token_ttl: u64,
    /// Name of the demo user created on the first run. Its password comes from
    /// the environment variable SALLYPORT_DEMO_PASSWORD, else is random; either
    /// way it is stored in the data directory and printed at start.
    #[arg(long, default_value = "demo")]
    pub username: String,
    /// How the browser signs in: `code` (OpenID Connect at the issuer's login page) or
    /// `password` (the gateway's own login form, the article's flow).
    #[arg(long, value_enum, env = "SALLYPORT_DEMO_FLOW", default_value = "code")]
    pub flow: FlowArg,
}

/// The demo user's password for the first run, from the environment only:
/// a command-line argument would be visible to every user of the machine.
/// Unset, a random one is generated and stored in the data directory.
const PASSWORD_ENV: &str = "SALLYPORT_DEMO_PASSWORD";

/// Runs the demo until Ctrl-C (or SIGTERM), then stops all three parts.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = DemoOptions {
        data_dir: args.data_dir,
        port: args.port,
        issuer_port: args.issuer_port,
        app_port: args.app_port,
        access_token_ttl: Duration::from_secs(args.access_token_ttl),
        username: args.username,
        password: std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()),
        flow: args.flow.into(),
        ..DemoOptions::default()
    };
    let data_dir = options.data_dir.clone();
    let demo = sallyport_demo::start(options)
        .await
        .context("starting the demo")?;
    print_banner(&demo, &data_dir);
    wait_for_signal().await?;
    println!("\nStopping…");
    demo.shutdown(Duration::from_secs(5)).await;
    println!("Stopped. Data kept in {}.", data_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn print_banner(demo: &RunningDemo, data_dir: &std::path::Path) {
    let c = &demo.credentials;
    let first = if demo.created_user {
        "Created the demo user (first run)."
    } else {
        "Reusing the demo user from an earlier run."
    };
    let (flow, revoke_effect) = match demo.flow {
        Flow::Password => (
            "password (the gateway's login form posts to the issuer's /api/login)",
            "the app goes to the login page at its next token renewal",
        ),
        _ => (
            "code (OpenID Connect: sign in on the issuer's page)",
            "the issuer tells the gateway by back-channel logout;\n\
             \x20 the app's very next request goes to the login page",
        ),
    };
    // The lines starting with a name and a colon are read by the browser tests.
    println!(
        "\nSallyport demo is running.\n\n\
         \x20 Open:      {gateway}/\n\
         \x20 Username:  {user}\n\
         \x20 Password:  {password}\n\n\
         {first}\n\n\
         \x20 flow:      {flow}\n\
         \x20 gateway:   {gateway}  (cookie sessions, /auth/login, /auth/client.js)\n\
         \x20 issuer:    {issuer}  (tokens, login page, /.well-known/openid-configuration, /metrics)\n\
         \x20 app:       {app}  (the demo app; refuses requests without a token)\n\
         \x20 database:  {db}\n\
         \x20 config:    {config}  (the issuer's settings, for sallyport user|session|keys)\n\
         \x20 data dir:  {dir}\n\n\
         Revoke the session from another terminal ({revoke_effect}):\n\
         \x20 sallyport session revoke --config {config} --user {user}\n\n\
         Press Ctrl-C to stop.",
        gateway = demo.gateway_url,
        user = c.username,
        password = c.password,
        issuer = demo.issuer_url,
        app = demo.app_url,
        db = demo.database_url,
        config = demo.issuer_config.display(),
        dir = data_dir.display(),
    );
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for Ctrl-C")
    }
}
