//! `sallyport`: the one binary. Each subcommand lives in its own module under `cmd/`
//! and exposes `Args` (clap) plus `run(args) -> anyhow::Result<ExitCode>`.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod cmd;
mod telemetry;

/// mimalloc instead of the system allocator: the gateway allocates and frees small buffers
/// (headers, bodies, futures) on every proxied request, and glibc malloc showed up at
/// ≈ 7 % of its CPU under load (docs/benchmarks.md, "Gateway"). Declaring the static
/// needs no `unsafe`; the crate implements `GlobalAlloc`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sealed-cookie authentication for web apps backed by short-lived JWT access tokens
/// and rotating refresh tokens.
#[derive(Debug, Parser)]
#[command(name = "sallyport", version, about, long_about = None)]
struct Cli {
    /// Log line format of `gateway`, `issuer` and `demo` (stderr; `RUST_LOG` filters).
    #[arg(
        long,
        global = true,
        env = "SALLYPORT_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run issuer, gateway and a demo app on localhost (SQLite, demo user).
    ///
    /// By default (`--flow code`) the browser signs in with OpenID Connect: the gateway
    /// sends it to the issuer's login page (authorization-code flow with PKCE), the
    /// gateway being a confidential client registered at the issuer. `sallyport session
    /// revoke --config <data dir>/issuer.toml --user demo` in another terminal then ends
    /// the session at once: the issuer posts a back-channel logout token to the gateway,
    /// and the app's very next request goes to the login page.
    ///
    /// `--flow password` runs the article's flow instead: the gateway's own login form
    /// posts the password to the issuer's JSON API, and a revoked session ends at the
    /// next renewal of its access token.
    ///
    /// The banner prints the URL to open, the demo login and the exact revoke command.
    Demo(cmd::demo::Args),
    /// Run the gateway (BFF) in front of an upstream app.
    Gateway(cmd::gateway::Args),
    /// Run the token issuer (login, refresh-token rotation, JWKS).
    Issuer(cmd::issuer::Args),
    /// Manage the issuer's users.
    #[command(subcommand)]
    User(cmd::admin::UserCommand),
    /// Manage the issuer's sessions (refresh-token families).
    #[command(subcommand)]
    Session(cmd::admin::SessionCommand),
    /// Manage the issuer's signing keys.
    #[command(subcommand)]
    Keys(cmd::admin::KeysCommand),
    /// Seal JSON read from stdin into an iron-session compatible cookie value.
    Seal(cmd::seal::SealArgs),
    /// Unseal an iron-session cookie value and print its JSON.
    Unseal(cmd::seal::UnsealArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Args),
    /// Print the manual page, or write one per subcommand with --out-dir.
    Man(cmd::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs and trace export for the servers; flushed when `_telemetry` drops at the end.
    let role = match &cli.command {
        Command::Demo(_) => Some("demo"),
        Command::Gateway(_) => Some("gateway"),
        Command::Issuer(_) => Some("issuer"),
        _ => None,
    };
    let _telemetry = match role.map(|r| telemetry::init(cli.log_format, r)).transpose() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("sallyport: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Debug builds only (release builds never read the variable, and carry neither its
    // name nor this message): say loudly that the clock is shifted, so a test stack's
    // logs explain their timestamps.
    #[cfg(debug_assertions)]
    if let Some(file) = sallyport_clock::test_offset_file() {
        tracing::warn!(
            file = %file.display(),
            "debug build: the clock follows the test clock offset file ({})",
            sallyport_clock::TEST_OFFSET_ENV
        );
    }
    let result = match cli.command {
        Command::Seal(args) => cmd::seal::seal(args),
        Command::Unseal(args) => cmd::seal::unseal(args),
        Command::Demo(args) => cmd::run_async(cmd::demo::run(args)),
        Command::Gateway(args) => cmd::run_async(cmd::gateway::run(args)),
        Command::Issuer(args) => cmd::run_async(cmd::issuer::run(args)),
        Command::User(c) => cmd::run_async(cmd::admin::user(c)),
        Command::Session(c) => cmd::run_async(cmd::admin::session(c)),
        Command::Keys(c) => cmd::run_async(cmd::admin::keys(c)),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Man(args) => cmd::man::run(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sallyport: {err:#}");
            ExitCode::FAILURE
        }
    }
}
