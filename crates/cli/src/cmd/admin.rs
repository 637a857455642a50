//! `sallyport user|session|keys`: administration of the issuer's database. Passwords
//! come from a prompt or stdin, never from the command line (argv is visible to every
//! user of the machine and lands in shell history).

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sallyport_issuer::{Config, Issuer};

/// Where the issuer's database is.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DbArgs {
    /// Issuer TOML configuration file.
    #[arg(long, short, env = "SALLYPORT_ISSUER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Database URL (`sqlite://file.db` or `postgres://…`); overrides the configuration.
    #[arg(
        long,
        env = "SALLYPORT_ISSUER_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl DbArgs {
    async fn open(&self) -> anyhow::Result<Issuer> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.database_url {
            config.database_url = url.clone();
        }
        // Admin commands hash at most one password; keep argon2 parameters as configured.
        Issuer::open(config)
            .await
            .context("opening the issuer database")
    }
}

/// `sallyport user …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user (password from a prompt, or one line of stdin).
    Add {
        /// Login name.
        username: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Refuse logins and revoke the user's sessions.
    Disable {
        /// Login name.
        username: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Allow logins again.
    Enable {
        /// Login name.
        username: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a new password (revokes the user's sessions).
    Passwd {
        /// Login name.
        username: String,
        /// Read the password from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `sallyport session …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SessionCommand {
    /// List sessions (refresh-token families), newest first.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Include revoked sessions.
        #[arg(long)]
        all: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a session by id, or every session of `--user`. The client of a code-flow
    /// session is told by back-channel logout; the command waits (at most 60 s) for
    /// that delivery.
    Revoke {
        /// Session id.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// Revoke all sessions of this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `sallyport keys …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// List signing keys.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a new signing key; the old one stays published until its tokens expire.
    Rotate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the public JWKS (what /.well-known/jwks.json serves). With --private,
    /// every signing key's PRIVATE key in clear (PKCS#8 PEM in JSON), for a backup.
    Export {
        /// Include the private keys (decrypted if stored encrypted). Keep the output
        /// as secret as the database.
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

const MIN_PASSWORD_CHARS: usize = 8;

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(password)
}

fn fmt_ms(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), sallyport_issuer::format_unix_ms)
}

/// Runs `sallyport user …`.
pub(crate) async fn user(c: UserCommand) -> anyhow::Result<ExitCode> {
    match c {
        UserCommand::Add {
            username,
            name,
            roles,
            password_stdin,
            db,
        } => {
            let password = read_password(password_stdin)?;
            let issuer = db.open().await?;
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let user = issuer
                .admin()
                .add_user(&username, &password, name.as_deref(), &roles)
                .await?;
            println!("created user {} ({})", user.username, user.id);
        }
        UserCommand::List { json, db } => {
            let issuer = db.open().await?;
            for u in issuer.admin().list_users().await? {
                if json {
                    println!("{}", serde_json::to_string(&u)?);
                } else {
                    println!(
                        "{:<24} {:<38} {:<9} {:<24} {}",
                        u.username,
                        u.id,
                        if u.disabled { "disabled" } else { "active" },
                        u.name.as_deref().unwrap_or("-"),
                        u.roles.join(",")
                    );
                }
            }
        }
        UserCommand::Disable { username, db } => {
            let issuer = db.open().await?;
            issuer.admin().disable_user(&username).await?;
            println!("disabled {username} and revoked their sessions");
            flush_logouts(&issuer).await;
        }
        UserCommand::Enable { username, db } => {
            db.open().await?.admin().enable_user(&username).await?;
            println!("enabled {username}");
        }
        UserCommand::Passwd {
            username,
            password_stdin,
            db,
        } => {
            let password = read_password(password_stdin)?;
            let issuer = db.open().await?;
            issuer.admin().set_password(&username, &password).await?;
            println!("password of {username} changed; their sessions were revoked");
            flush_logouts(&issuer).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ended code-flow sessions are announced to their clients over the back channel
/// (OpenID Connect back-channel logout) in the background: wait for those deliveries
/// (bounded) before the process exits.
async fn flush_logouts(issuer: &Issuer) {
    if !issuer
        .flush_logout_notifications(std::time::Duration::from_secs(60))
        .await
    {
        eprintln!("warning: back-channel logout still undelivered after 60 s; given up");
    }
}

/// Runs `sallyport session …`.
pub(crate) async fn session(c: SessionCommand) -> anyhow::Result<ExitCode> {
    match c {
        SessionCommand::List {
            user,
            all,
            json,
            db,
        } => {
            let issuer = db.open().await?;
            for s in issuer.admin().list_sessions(user.as_deref()).await? {
                if !all && s.revoked_at_ms.is_some() {
                    continue;
                }
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!(
                        "{:<38} user={} created={} last_used={} revoked={} addr={}",
                        s.id,
                        s.user_id,
                        fmt_ms(Some(s.created_at_ms)),
                        fmt_ms(Some(s.last_used_at_ms)),
                        fmt_ms(s.revoked_at_ms),
                        s.client_addr.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        SessionCommand::Revoke { id, user, db } => {
            let issuer = db.open().await?;
            match (id, user) {
                (Some(id), _) => {
                    issuer.admin().revoke_session(&id).await?;
                    println!("revoked session {id}");
                    flush_logouts(&issuer).await;
                }
                (None, Some(user)) => {
                    let n = issuer.admin().revoke_user_sessions(&user).await?;
                    println!("revoked {n} sessions of {user}");
                    flush_logouts(&issuer).await;
                }
                (None, None) => bail!("give a session id or --user"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sallyport keys …`.
pub(crate) async fn keys(c: KeysCommand) -> anyhow::Result<ExitCode> {
    match c {
        KeysCommand::List { json, db } => {
            let issuer = db.open().await?;
            for k in issuer.admin().list_keys().await? {
                if json {
                    println!("{}", serde_json::to_string(&k)?);
                } else {
                    println!(
                        "{:<36} {:<6} created={} retired={} {}{}{}",
                        k.kid,
                        k.algorithm,
                        fmt_ms(Some(k.created_at_ms)),
                        fmt_ms(k.retired_at_ms),
                        if k.signing { "signing " } else { "" },
                        if k.published {
                            "published"
                        } else {
                            "unpublished"
                        },
                        if k.encrypted { " encrypted" } else { "" }
                    );
                }
            }
        }
        KeysCommand::Rotate { db } => {
            let key = db.open().await?.admin().rotate_keys().await?;
            println!(
                "new signing key {} ({}); the previous key stays published until its tokens expire",
                key.kid, key.algorithm
            );
        }
        KeysCommand::Export { private, db } => {
            let admin = db.open().await?.admin();
            let out = if private {
                eprintln!(
                    "warning: printing PRIVATE signing keys in clear; store the output \
                     as securely as the database"
                );
                admin.export_private_keys().await?
            } else {
                admin.export_public_jwks().await?
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
