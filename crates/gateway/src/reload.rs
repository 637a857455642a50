//! Configuration reload (`SIGHUP`) without dropping a connection.
//!
//! # What is swapped
//!
//! Everything a request reads from the configuration lives in one [`Inner`]; the gateway
//! holds the current one in an [`ArcSwap`]. A request loads it once (an atomic load and a
//! reference count: no lock on the request path) and uses that copy from start to end,
//! so it never sees half of one configuration and half of another, and a request in
//! flight during a reload finishes on the configuration it started with. A reload builds
//! a complete new [`Inner`] off the request path and stores it in one step.
//!
//! The listening sockets, the routers and every client connection belong to the server,
//! not to [`Inner`], so a reload never closes one: keep-alive connections opened before
//! a reload serve their next request with the new configuration.
//!
//! # What outlives a configuration
//!
//! A new [`Inner`] shares with the old one:
//! - the logout records (memory, `store.state_dir` file, Redis connection) — a logout
//!   must not be forgotten because the configuration changed;
//! - the renewals in flight and the grace map of just-rotated refresh tokens
//!   ([`crate::renew::Renewer::reconfigure`]) — a renewal running across a reload is
//!   joined by requests served after it, never started a second time (a second
//!   redemption of a rotating refresh token is a reuse, which revokes the session);
//! - the metrics registry and the clock;
//! - the upstream connection pool, when `upstream` did not change (otherwise new
//!   connections go to the new upstream, and the old pool's idle connections are closed
//!   once the requests still using them are done);
//! - the cache of unsealed sessions, **only when the sealing secrets did not change**.
//!   The cache remembers seals this process opened, and whether each needs resealing
//!   under the current secret id. After a rotation both answers may be wrong: a seal made
//!   with a secret that was just removed must stop opening at once, and a seal made with
//!   the previous current id must now be resealed with the new one. So a change of
//!   secrets starts an empty cache (each session is unsealed once more).
//!
//! Backend clients (URLs, credentials, timeout, JWKS), the cookie codec (secrets and
//! attributes), public paths, origin policy, header policy, proxy timeouts, login page and
//! every other setting come from the new configuration.
//!
//! # Settings that need a restart
//!
//! Some settings belong to things built once at start-up: the sockets (`listen`,
//! `admin.enabled`, `admin.listen`), the routes (`prefix`,
//! `admin.health_on_public_listener`), the listener's connection limits (`[server]`), the
//! state store (`[store]`: Redis, `state_dir`, the logout-record bounds), and what the
//! shared state was sized or timed with (`session.ttl_secs`: how long logouts are
//! remembered; `session.renew_grace_secs`: the grace map's lifetime;
//! `session.cache_entries`). A reload that changes any of them **applies everything
//! else** and keeps the running value of each, with one warning naming each setting:
//! refusing the whole reload would hold back a secret rotation or an upstream move
//! because of an unrelated edit, and the warning says what a restart would still change.
//!
//! # Refusal
//!
//! A configuration that does not load (unreadable file, TOML error, unknown key) or does
//! not validate is refused with one error line naming the setting; nothing changes. Both
//! outcomes are counted (`sallyport_gateway_config_reloads_total{result}`) and
//! `sallyport_gateway_config_last_reload_successful` says whether the last one applied.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{Config, Settings};
use crate::error::Error;
use crate::{Gateway, Inner, backend, proxy, renew, session_cache};

/// The current configuration, swappable.
pub(crate) struct Live {
    current: ArcSwap<Inner>,
    /// Serialises reloads (never requests): two signals in a row apply one after the other.
    reloading: Mutex<()>,
}

impl Live {
    pub(crate) fn new(inner: Inner) -> Self {
        inner.metrics.config_state(true, inner.clock.now_ms());
        Self {
            current: ArcSwap::from_pointee(inner),
            reloading: Mutex::new(()),
        }
    }

    pub(crate) fn current(&self) -> Arc<Inner> {
        self.current.load_full()
    }
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Settings that changed in the new configuration but need a restart: each keeps its
    /// running value (named as in the configuration file, e.g. `listen`, `store.redis_url`).
    pub kept: Vec<String>,
    /// The sealing secrets changed (rotation): new cookies are sealed with the new
    /// highest id, and cookies sealed with any configured id still open.
    pub secrets_changed: bool,
    /// The upstream changed: new requests go to the new one.
    pub upstream_changed: bool,
}

impl Gateway {
    /// Replaces the configuration with `config` (loaded by the caller with
    /// [`Config::load`], as at start-up) without interrupting anything: see the module
    /// documentation of `reload.rs` (docs/operations.md, "Reloading the configuration").
    ///
    /// Settings that need a restart keep their running value ([`Reloaded::kept`]). An
    /// invalid configuration is refused with the error naming the setting, and the
    /// running one stays. Either outcome is logged and counted in the metrics.
    pub fn reload(&self, config: Config) -> Result<Reloaded, Error> {
        let result = self.try_reload(config);
        let current = self.current();
        let now_ms = current.clock.now_ms();
        match &result {
            Ok(done) => {
                current.metrics.config_reload(true, now_ms);
                for setting in &done.kept {
                    tracing::warn!(
                        setting = %setting,
                        "configuration reload: `{setting}` changed but needs a restart; \
                         keeping its running value"
                    );
                }
                tracing::info!(
                    secrets_changed = done.secrets_changed,
                    upstream_changed = done.upstream_changed,
                    kept = done.kept.len(),
                    "configuration reloaded"
                );
            }
            Err(error) => {
                current.metrics.config_reload(false, now_ms);
                sallyport_serve::reload::log_refused_reload(error);
            }
        }
        result
    }

    fn try_reload(&self, mut config: Config) -> Result<Reloaded, Error> {
        // A poisoned lock only means an earlier reload panicked; nothing it guards.
        let _one_at_a_time = self
            .live
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let kept = keep_restart_only(&old.settings.source, &mut config);
        let settings = config.validate()?;
        let secrets_changed = secrets(&old.settings.source) != secrets(&config);
        let upstream_changed = old.settings.upstream.base != settings.upstream.base;
        let durable = old.logged_out.is_durable();
        let warnings = crate::logout_finality_warnings(&settings, durable);
        let warn = warnings != crate::logout_finality_warnings(&old.settings, durable);
        let inner = rebuild(&old, settings, secrets_changed)?;
        self.live.current.store(Arc::new(inner));
        // Start-up's warnings about logout finality, again if the backend's revocation
        // settings changed what they say.
        for w in warnings.iter().filter(|_| warn) {
            tracing::warn!("{w}");
        }
        Ok(Reloaded {
            kept,
            secrets_changed,
            upstream_changed,
        })
    }
}

/// The new configuration's [`Inner`], sharing with `old` what outlives a configuration
/// (see the module documentation). Built completely before it is swapped in: a failure
/// here changes nothing.
fn rebuild(old: &Inner, mut settings: Settings, secrets_changed: bool) -> Result<Inner, Error> {
    if old.oidc.is_some() {
        // The provider's endpoints were discovered at start-up into the backend settings
        // (`oidc::prepare`), and `[backend]` of an `oidc` gateway needs a restart
        // (`keep_restart_only`): the running backend settings stay, discovery included.
        settings.backend = old.settings.backend.clone();
    }
    let backend = backend::Backend::new(settings.backend.clone())?.with_oidc(old.oidc.clone());
    let call_bound = renew::call_bound(backend.timeout(), settings.renew_grace);
    let renew_backend = backend::Backend::new(crate::config::BackendSettings {
        timeout: call_bound,
        ..settings.backend.clone()
    })?
    .with_oidc(old.oidc.clone());
    let renewer = old.renewer.reconfigure(
        renew_backend,
        backend.timeout(),
        settings.passwords().clone(),
        call_bound,
    );
    let page = crate::page::LoginPage::new(
        settings.login_template.clone(),
        settings.login_title.clone(),
    )?;
    let sessions = if secrets_changed {
        Arc::new(session_cache::SessionCache::new(
            settings.session_cache_entries,
        ))
    } else {
        old.sessions.clone()
    };
    let client: proxy::HttpClient = old.client.reconfigured(&old.settings, &settings);
    Ok(Inner {
        cookies: settings.cookies.clone(),
        settings,
        sessions,
        backend,
        renewer,
        logged_out: old.logged_out.clone(),
        client,
        page,
        metrics: old.metrics.clone(),
        clock: old.clock.clone(),
        oidc: old.oidc.clone(),
    })
}

/// The sealing secrets as configured (compared, never logged).
fn secrets(c: &Config) -> (&Option<String>, &std::collections::BTreeMap<String, String>) {
    (&c.session.secret, &c.session.secrets)
}

/// Puts back into `new` the running value of every setting that needs a restart, and
/// names those that differed.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut kept = Vec::new();
    // Whole sections: every key in them needs a restart; each changed key is named.
    kept.extend(changed_keys("server", &old.server, &new.server));
    new.server = old.server.clone();
    kept.extend(changed_keys("store", &old.store, &new.store));
    new.store = old.store.clone();
    // An OpenID Connect relying party is set up once, at start-up (discovery, the
    // provider's keys, the replay caches of state and logout tokens): its `[backend]`
    // section, and a switch to or from it, need a restart.
    if old.backend.kind == crate::config::BackendKind::Oidc
        || new.backend.kind == crate::config::BackendKind::Oidc
    {
        kept.extend(changed_keys("backend", &old.backend, &new.backend));
        new.backend = old.backend.clone();
    }
    macro_rules! keep {
        ($name:literal, $($field:ident).+) => {
            if json(&old.$($field).+) != json(&new.$($field).+) {
                kept.push($name.to_owned());
                new.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    keep!("listen", listen);
    keep!("prefix", prefix);
    keep!("admin.enabled", admin.enabled);
    keep!("admin.listen", admin.listen);
    keep!(
        "admin.health_on_public_listener",
        admin.health_on_public_listener
    );
    keep!("session.ttl_secs", session.ttl_secs);
    keep!("session.renew_grace_secs", session.renew_grace_secs);
    keep!("session.cache_entries", session.cache_entries);
    kept
}

/// A value as JSON, for comparing configuration values of any type (they are all
/// serialisable; not all are `PartialEq`).
fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// `section.key` for every key whose value differs between `old` and `new`.
fn changed_keys(section: &str, old: &impl Serialize, new: &impl Serialize) -> Vec<String> {
    let (old, new) = (json(old), json(new));
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => o
            .keys()
            .chain(n.keys().filter(|k| !o.contains_key(*k)))
            .filter(|k| o.get(*k) != n.get(*k))
            .map(|k| format!("{section}.{k}"))
            .collect(),
        _ if old != new => vec![section.to_owned()],
        _ => Vec::new(),
    }
}

/// Reloads `gateway` on every signal `hangups` receives (`SIGHUP`) until the process
/// ends: `load` reads the configuration again exactly as at start-up (same file, the
/// process's environment, the same command-line overrides). A configuration that does
/// not load is refused like one that does not validate (see [`Gateway::reload`]).
///
/// The caller creates `hangups` (`tokio::signal::unix::signal(SignalKind::hangup())`)
/// before the slow parts of start-up: from then on `SIGHUP` no longer ends the process
/// (its default action), and one received before this runs is applied as soon as it
/// does.
#[cfg(unix)]
pub fn reload_on_sighup<F>(
    hangups: tokio::signal::unix::Signal,
    gateway: Gateway,
    load: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Result<Config, Error> + Send + Sync + 'static,
{
    sallyport_serve::reload::on_hangup(hangups, move || match load() {
        Ok(config) => {
            let _ = gateway.reload(config);
        }
        Err(error) => {
            let current = gateway.current();
            current.metrics.config_reload(false, current.clock.now_ms());
            sallyport_serve::reload::log_refused_reload(&error);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named_and_kept() {
        let old = Config::default();
        let mut new = old.clone();
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.store.redis_url = Some("redis://:hunter2@127.0.0.1:1".into());
        new.server.max_connections = old.server.max_connections + 1;
        new.session.ttl_secs += 1;
        new.upstream = "http://127.0.0.1:1".into();
        let kept = keep_restart_only(&old, &mut new);
        assert_eq!(
            kept,
            [
                "server.max_connections",
                "store.redis_url",
                "listen",
                "session.ttl_secs"
            ]
        );
        assert!(kept.iter().all(|k| !k.contains("hunter2")));
        assert_eq!(new.listen, old.listen);
        assert_eq!(new.store.redis_url, None);
        assert_eq!(new.server.max_connections, old.server.max_connections);
        assert_eq!(new.session.ttl_secs, old.session.ttl_secs);
        // Everything else is the new value.
        assert_eq!(new.upstream, "http://127.0.0.1:1");
        assert!(keep_restart_only(&old, &mut Config::default()).is_empty());
    }
}
