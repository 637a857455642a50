//! The `[server]` section shared by the gateway's and the issuer's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{BodyLimits, Options};

/// `[server]`: limits on client connections. Same keys for `sallyport gateway` and
/// `sallyport issuer`; see docs/configuration.md for why each default is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Most connections open at once on the listener; past it new connections are
    /// closed as soon as they are accepted (default 10 000).
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64); 0 = no
    /// such cap (default). Behind a reverse proxy every client has the proxy's address,
    /// so set it only when clients connect directly.
    pub max_connections_per_ip: usize,
    /// Longest wait for a complete request head, also between two requests on a
    /// keep-alive connection (default 10 000 ms).
    pub header_read_timeout_ms: Option<u64>,
    /// Longest a response write may make no progress — the client stopped reading —
    /// before the connection is closed (default 30 000 ms).
    pub send_timeout_ms: u64,
    /// A request body that delivers no data for this long while it is read fails; the
    /// request ends with 408 (default 10 000 ms).
    pub body_idle_timeout_ms: u64,
    /// After its first `body_idle_timeout_ms` of waiting, a request body must arrive at
    /// least this fast (bytes per second of waiting) or it fails like an idle one;
    /// 0 = no minimum (default 240, Kestrel's).
    pub body_min_bytes_per_sec: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let d = Options::default();
        Self {
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            header_read_timeout_ms: None,
            send_timeout_ms: millis(d.send_timeout),
            body_idle_timeout_ms: millis(d.body.idle),
            body_min_bytes_per_sec: d.body.min_bytes_per_sec,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A `[server]` value that cannot work; `setting` is the key as the operator writes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {message}")]
pub struct ConfigError {
    /// E.g. `server.max_connections`.
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

const HOUR_MS: u64 = 3600 * 1000;

impl ServerConfig {
    /// Checks every value and returns [`Options`]; `header_read_timeout` applies when
    /// `header_read_timeout_ms` is unset. The drain timeout is the default one.
    pub fn options(&self, header_read_timeout: Duration) -> Result<Options, ConfigError> {
        let ms = |setting: &'static str, v: u64| -> Result<Duration, ConfigError> {
            if !(1..=HOUR_MS).contains(&v) {
                return Err(ConfigError {
                    setting,
                    message: format!("{v} is outside 1..={HOUR_MS} milliseconds"),
                });
            }
            Ok(Duration::from_millis(v))
        };
        if self.max_connections == 0 {
            return Err(ConfigError {
                setting: "server.max_connections",
                message: "must be at least 1".into(),
            });
        }
        let header_read_timeout = match self.header_read_timeout_ms {
            Some(v) => ms("server.header_read_timeout_ms", v)?,
            None => header_read_timeout,
        };
        Ok(Options {
            header_read_timeout,
            send_timeout: ms("server.send_timeout_ms", self.send_timeout_ms)?,
            body: BodyLimits {
                idle: ms("server.body_idle_timeout_ms", self.body_idle_timeout_ms)?,
                min_bytes_per_sec: self.body_min_bytes_per_sec,
            },
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            ..Options::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_default_options() {
        let o = ServerConfig::default()
            .options(Duration::from_secs(7))
            .unwrap();
        let d = Options::default();
        assert_eq!(o.header_read_timeout, Duration::from_secs(7));
        assert_eq!(o.send_timeout, d.send_timeout);
        assert_eq!(o.body, d.body);
        assert_eq!(o.max_connections, d.max_connections);
        assert_eq!(o.max_connections_per_ip, d.max_connections_per_ip);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            (
                ServerConfig {
                    max_connections: 0,
                    ..ServerConfig::default()
                },
                "server.max_connections",
            ),
            (
                ServerConfig {
                    header_read_timeout_ms: Some(0),
                    ..ServerConfig::default()
                },
                "server.header_read_timeout_ms",
            ),
            (
                ServerConfig {
                    send_timeout_ms: 0,
                    ..ServerConfig::default()
                },
                "server.send_timeout_ms",
            ),
            (
                ServerConfig {
                    body_idle_timeout_ms: HOUR_MS + 1,
                    ..ServerConfig::default()
                },
                "server.body_idle_timeout_ms",
            ),
        ];
        for (config, setting) in cases {
            let err = config.options(Duration::from_secs(10)).unwrap_err();
            assert_eq!(err.setting, setting);
            assert!(err.to_string().contains(setting), "{err}");
        }
    }
}
