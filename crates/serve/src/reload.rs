//! Configuration reload on `SIGHUP`, shared by the gateway and the issuer: what a
//! reload *is* (which settings apply, which need a restart) is each server's own; when
//! it runs, where and how a refusal is logged is the same for both, and lives here.

use std::fmt::Display;
use std::sync::Arc;

/// Runs `reload` once for every signal `hangups` receives, until the process ends.
///
/// `reload` reads files and builds clients — blocking work — so it runs on the blocking
/// pool while the runtime's worker threads keep serving; one at a time, in the order the
/// signals came. The caller creates `hangups`
/// (`tokio::signal::unix::signal(SignalKind::hangup())`) first thing at start-up: from
/// then on `SIGHUP` no longer ends the process (its default action), and one received
/// before this runs is applied as soon as it does.
#[cfg(unix)]
pub fn on_hangup<F>(
    mut hangups: tokio::signal::unix::Signal,
    reload: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() + Send + Sync + 'static,
{
    let reload = Arc::new(reload);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let reload = reload.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || reload()).await {
                tracing::error!(error = %e, "configuration reload failed");
            }
        }
    })
}

/// The one log line of a refused reload. An error may span several lines (a TOML error
/// shows the offending line and a caret): they are joined, so that the refusal stays one
/// line that names the setting or the file position.
pub fn log_refused_reload(error: &dyn Display) {
    let error = error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::error!(
        %error,
        "configuration reload refused; the previous configuration keeps serving"
    );
}
