//! Configuration reload (`SIGHUP`) of a running issuer.
//!
//! The settings live in an `ArcSwap`: a reload validates the new configuration whole and
//! swaps it in with one atomic store, so readers never lock and each read sees one whole
//! configuration. (Unlike the gateway, an issuer request may read the settings more than
//! once; what reloads here — the client registry, proxies, lifetimes, limits — are
//! independent values, so a request that straddles a reload sees each of them either old
//! or new, never a mixture within one value.) Connections, the database pool, the
//! signing keys, the login limiter's state and the metrics are untouched. Reloads run
//! one at a time.
//!
//! What changes: the OAuth client registry (`clients`, `allow_public_clients`), who is a
//! trusted proxy and which header it sets (`[http]`), token and session lifetimes
//! (`access_token_ttl_secs`, `refresh_reuse_interval_secs`, `refresh_idle_ttl_secs`,
//! `session_max_lifetime_secs`), `key_cache_secs`, `max_body_bytes` and
//! `request_timeout_secs`. New values apply to requests that start after the reload;
//! lifetimes apply to tokens and sessions issued from then on. A retired signing key stays
//! published for the longest access-token lifetime (plus key cache) in force since
//! start-up, so a shorter `access_token_ttl_secs` never unpublishes the key of a token
//! issued before the reload. (How long a shutdown waits for requests in flight was
//! derived from `request_timeout_secs` at start-up and stays so.)
//!
//! What needs a restart, because something built at start-up holds it: the database
//! (`database_url`, `database_max_connections`), the socket and its limits (`listen`,
//! `[server]`, `header_read_timeout_secs`), what tokens are checked against (`issuer`,
//! `audience`, `access_token_leeway_secs`: the verifier of our own tokens), key creation
//! (`algorithm`, the key-encryption key), the password hasher (`[argon2]`) and the login
//! limiter (`[rate_limit]`), the back-channel logout sender (`[backchannel_logout]`). A
//! reload that changes one of them applies everything else, keeps the running value and
//! logs a warning naming it — as the gateway does.

use serde::Serialize;

use crate::{Config, Issuer, Result};

/// What an issuer reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Changed settings that need a restart; each keeps its running value.
    pub kept: Vec<String>,
}

impl Issuer {
    /// Replaces the settings with those of `config` (loaded as at start-up, with
    /// [`Config::load`]); see the module documentation for what applies. An invalid
    /// configuration is refused (the error names the setting) and the running one stays.
    /// Either outcome is logged and counted
    /// (`sallyport_issuer_config_reloads_total{result}`).
    pub fn reload(&self, config: Config) -> Result<Reloaded> {
        let result = self.try_reload(config);
        match &result {
            Ok(done) => {
                self.metrics().config_reload(true);
                for setting in &done.kept {
                    tracing::warn!(
                        setting = %setting,
                        "configuration reload: `{setting}` changed but needs a restart; \
                         keeping its running value"
                    );
                }
                tracing::info!(kept = done.kept.len(), "configuration reloaded");
            }
            Err(error) => {
                self.metrics().config_reload(false);
                sallyport_serve::reload::log_refused_reload(error);
            }
        }
        result
    }

    fn try_reload(&self, mut config: Config) -> Result<Reloaded> {
        let _one_at_a_time = self.reload_lock();
        let old = self.settings();
        let kept = keep_restart_only(&old.raw, &mut config);
        let settings = config.validate()?;
        self.swap_settings(settings);
        Ok(Reloaded { kept })
    }
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Puts back into `new` the running value of each setting that needs a restart, and
/// names those that differed (never their values: URLs may hold passwords).
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($name:literal, $field:ident) => {
            if json(&old.$field) != json(&new.$field) {
                kept.push($name.to_owned());
                new.$field = old.$field.clone();
            }
        };
    }
    keep!("database_url", database_url);
    keep!("database_max_connections", database_max_connections);
    keep!("listen", listen);
    keep!("issuer", issuer);
    keep!("audience", audience);
    keep!("algorithm", algorithm);
    keep!("access_token_leeway_secs", access_token_leeway_secs);
    keep!("argon2", argon2);
    keep!("rate_limit", rate_limit);
    keep!("header_read_timeout_secs", header_read_timeout_secs);
    keep!("server", server);
    // The back-channel logout sender (its queue and workers) is started with these.
    keep!("backchannel_logout", backchannel_logout);
    // From SALLYPORT_KEY_ENCRYPTION_KEY: the process's environment, so it cannot differ
    // on a reload anyway; kept for callers that build the configuration themselves.
    if old.key_encryption_key != new.key_encryption_key {
        kept.push("SALLYPORT_KEY_ENCRYPTION_KEY".to_owned());
        new.key_encryption_key.clone_from(&old.key_encryption_key);
    }
    kept
}

/// Reloads `issuer` on every signal `hangups` receives (`SIGHUP`): `load` reads the
/// configuration as at start-up. A configuration that does not load is refused like one
/// that does not validate.
///
/// The caller creates `hangups` (`tokio::signal::unix::signal(SignalKind::hangup())`)
/// first thing at start-up: from then on `SIGHUP` no longer ends the process (its default
/// action), and one received while the database is still being opened is applied as
/// soon as this runs.
#[cfg(unix)]
pub fn reload_on_sighup<F>(
    hangups: tokio::signal::unix::Signal,
    issuer: Issuer,
    load: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Result<Config> + Send + Sync + 'static,
{
    sallyport_serve::reload::on_hangup(hangups, move || match load() {
        Ok(config) => {
            let _ = issuer.reload(config);
        }
        Err(error) => {
            issuer.metrics().config_reload(false);
            sallyport_serve::reload::log_refused_reload(&error);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named_and_kept() {
        let old = Config::for_tests("sqlite::memory:");
        let mut new = old.clone();
        new.database_url = "postgres://u:hunter2@db/issuer".into();
        new.argon2.memory_kib *= 2;
        new.http.trusted_proxies = vec!["10.0.0.0/8".into()];
        new.access_token_ttl_secs += 1;
        let kept = keep_restart_only(&old, &mut new);
        assert_eq!(kept, ["database_url", "argon2"]);
        assert_eq!(new.database_url, old.database_url);
        assert_eq!(new.argon2.memory_kib, old.argon2.memory_kib);
        assert_eq!(new.http.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(new.access_token_ttl_secs, old.access_token_ttl_secs + 1);
    }
}
