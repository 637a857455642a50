//! Administration of users, sessions and signing keys — what `sallyport user|session|keys`
//! runs, and what other crates' tests use to set up accounts.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys;
use crate::password::MAX_PASSWORD_BYTES;
use crate::store::{AuditEvent, SessionRecord, UserRecord};
use crate::{Issuer, MAX_USERNAME_CHARS};

/// A user as the admin API shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Stable id, the JWT `sub`.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether logins are refused.
    pub disabled: bool,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        User {
            id: u.id.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            roles: u.role_list(),
            disabled: u.disabled_at.is_some(),
            created_at_ms: u.created_at,
        }
    }
}

/// A session (refresh-token family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Session id (`sid`).
    pub id: String,
    /// Owner id.
    pub user_id: String,
    /// Login time, unix ms.
    pub created_at_ms: i64,
    /// Last refresh, unix ms.
    pub last_used_at_ms: i64,
    /// Absolute expiry, unix ms.
    pub expires_at_ms: i64,
    /// Revocation time, unix ms.
    pub revoked_at_ms: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// Refresh-token generation.
    pub generation: i64,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub client_addr: Option<String>,
}

impl From<SessionRecord> for SessionInfo {
    fn from(s: SessionRecord) -> Self {
        SessionInfo {
            id: s.id,
            user_id: s.user_id,
            created_at_ms: s.created_at,
            last_used_at_ms: s.last_used_at,
            expires_at_ms: s.expires_at,
            revoked_at_ms: s.revoked_at,
            revoked_reason: s.revoked_reason,
            generation: s.generation,
            user_agent: s.user_agent,
            client_addr: s.client_addr,
        }
    }
}

/// A signing key (public facts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// `ES256` / `EdDSA`.
    pub algorithm: String,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// When it stopped signing, unix ms.
    pub retired_at_ms: Option<i64>,
    /// Whether it is in the JWKS.
    pub published: bool,
    /// Whether new tokens are signed with it.
    pub signing: bool,
    /// Whether its private key is stored encrypted (`SALLYPORT_KEY_ENCRYPTION_KEY`).
    pub encrypted: bool,
}

/// Admin handle; see [`Issuer::admin`].
#[derive(Debug, Clone)]
pub struct Admin {
    issuer: Issuer,
}

fn check_username(username: &str) -> Result<()> {
    let n = username.chars().count();
    if n == 0
        || n > MAX_USERNAME_CHARS
        || username.chars().any(char::is_control)
        || username.trim() != username
    {
        return Err(Error::InvalidInput {
            field: "username",
            message: format!(
                "1 to {MAX_USERNAME_CHARS} characters, no control characters or surrounding spaces"
            ),
        });
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidInput {
            field: "password",
            message: format!("1 to {MAX_PASSWORD_BYTES} bytes"),
        });
    }
    Ok(())
}

impl Admin {
    pub(crate) fn new(issuer: Issuer) -> Self {
        Admin { issuer }
    }

    async fn audit(
        &self,
        kind: &str,
        user: Option<&UserRecord>,
        session_id: Option<&str>,
        detail: Option<String>,
    ) {
        let event = AuditEvent {
            user_id: user.map(|u| u.id.clone()),
            username: user.map(|u| u.username.clone()),
            session_id: session_id.map(str::to_owned),
            detail,
            ..AuditEvent::new(kind, self.issuer.now_ms())
        };
        if let Err(err) = self.issuer.store().audit(&event).await {
            tracing::warn!(%err, "could not write audit event");
        }
    }

    async fn user(&self, username: &str) -> Result<UserRecord> {
        self.issuer
            .store()
            .user_by_name(username)
            .await?
            .ok_or_else(|| Error::UnknownUser(username.to_owned()))
    }

    /// Creates a user. Fails with [`Error::UserExists`] if the name is taken.
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        name: Option<&str>,
        roles: &[&str],
    ) -> Result<User> {
        check_username(username)?;
        check_password(password)?;
        if name.is_some_and(|n| n.chars().count() > 256) {
            return Err(Error::InvalidInput {
                field: "name",
                message: "at most 256 characters".into(),
            });
        }
        if roles.len() > 64 || roles.iter().any(|r| r.is_empty() || r.len() > 64) {
            return Err(Error::InvalidInput {
                field: "roles",
                message: "at most 64 roles of 1 to 64 bytes".into(),
            });
        }
        let hash = self.issuer.hasher().hash(password.to_owned()).await?;
        let now = self.issuer.now_ms();
        let record = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            username: username.to_owned(),
            name: name.map(str::to_owned),
            roles: serde_json::to_string(roles).map_err(|e| Error::Corrupt(e.to_string()))?,
            password_hash: hash,
            disabled_at: None,
            created_at: now,
            updated_at: now,
        };
        self.issuer.store().insert_user(&record).await?;
        self.audit("user_added", Some(&record), None, None).await;
        Ok(User::from(&record))
    }

    /// All users.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        Ok(self
            .issuer
            .store()
            .list_users()
            .await?
            .iter()
            .map(User::from)
            .collect())
    }

    /// One user by name.
    pub async fn find_user(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .issuer
            .store()
            .user_by_name(username)
            .await?
            .as_ref()
            .map(User::from))
    }

    /// Revokes every live session of a user and tells the clients of its code-flow
    /// sessions over the back channel. A session created between the listing and the
    /// revocation is revoked but not announced (a race of milliseconds with a login).
    async fn revoke_all(&self, user_id: &str, now: i64, reason: &str) -> Result<u64> {
        let live: Vec<String> = self
            .issuer
            .store()
            .list_sessions(Some(user_id))
            .await?
            .into_iter()
            .filter(|s| s.revoked_at.is_none())
            .map(|s| s.id)
            .collect();
        let n = self
            .issuer
            .store()
            .revoke_user_sessions(user_id, now, reason)
            .await?;
        for id in &live {
            self.issuer.notify_session_ended(id).await;
        }
        Ok(n)
    }

    /// Refuses future logins and refreshes, and revokes the user's sessions.
    pub async fn disable_user(&self, username: &str) -> Result<()> {
        let user = self.user(username).await?;
        let now = self.issuer.now_ms();
        self.issuer
            .store()
            .set_user_disabled(username, Some(now), now)
            .await?;
        let n = self.revoke_all(&user.id, now, "user_disabled").await?;
        self.audit(
            "user_disabled",
            Some(&user),
            None,
            Some(format!("{n} sessions revoked")),
        )
        .await;
        Ok(())
    }

    /// Allows logins again.
    pub async fn enable_user(&self, username: &str) -> Result<()> {
        let user = self.user(username).await?;
        let now = self.issuer.now_ms();
        self.issuer
            .store()
            .set_user_disabled(username, None, now)
            .await?;
        self.audit("user_enabled", Some(&user), None, None).await;
        Ok(())
    }

    /// Sets a new password and revokes the user's sessions (a password change ends
    /// every session that was opened with the old one).
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let user = self.user(username).await?;
        let hash = self.issuer.hasher().hash(password.to_owned()).await?;
        let now = self.issuer.now_ms();
        self.issuer
            .store()
            .set_password_hash(username, &hash, now)
            .await?;
        let n = self.revoke_all(&user.id, now, "password_changed").await?;
        self.audit(
            "password_changed",
            Some(&user),
            None,
            Some(format!("{n} sessions revoked")),
        )
        .await;
        Ok(())
    }

    /// Sessions, newest first; of one user when `username` is given.
    pub async fn list_sessions(&self, username: Option<&str>) -> Result<Vec<SessionInfo>> {
        let user_id = match username {
            Some(name) => Some(self.user(name).await?.id),
            None => None,
        };
        Ok(self
            .issuer
            .store()
            .list_sessions(user_id.as_deref())
            .await?
            .into_iter()
            .map(SessionInfo::from)
            .collect())
    }

    /// Revokes one session (its refresh tokens stop working; access tokens already
    /// issued live until they expire). A code-flow session's client is told over the
    /// back channel (queued; see [`Issuer::flush_logout_notifications`]).
    pub async fn revoke_session(&self, session_id: &str) -> Result<()> {
        let now = self.issuer.now_ms();
        if !self
            .issuer
            .store()
            .revoke_session(session_id, now, "admin")
            .await?
        {
            return Err(Error::UnknownSession(session_id.to_owned()));
        }
        self.issuer.metrics().revocation("admin");
        self.audit(
            "session_revoked",
            None,
            Some(session_id),
            Some("admin".into()),
        )
        .await;
        self.issuer.notify_session_ended(session_id).await;
        Ok(())
    }

    /// Revokes every session of a user; returns how many.
    pub async fn revoke_user_sessions(&self, username: &str) -> Result<u64> {
        let user = self.user(username).await?;
        let n = self
            .revoke_all(&user.id, self.issuer.now_ms(), "admin")
            .await?;
        self.audit(
            "sessions_revoked",
            Some(&user),
            None,
            Some(format!("{n} sessions")),
        )
        .await;
        Ok(n)
    }

    /// Signing keys, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let ring = self.issuer.reload_keys().await?;
        let now = self.issuer.now_ms();
        let retention = self.issuer.key_retention_ms();
        Ok(self
            .issuer
            .store()
            .signing_keys()
            .await?
            .into_iter()
            .map(|k| KeyInfo {
                published: keys::is_published(&k, now, retention),
                encrypted: keys::is_encrypted(&k),
                signing: k.kid == ring.signing_kid(),
                kid: k.kid,
                algorithm: k.algorithm,
                created_at_ms: k.created_at,
                retired_at_ms: k.retired_at,
            })
            .collect())
    }

    /// Creates a new signing key and retires the current one (which stays in the JWKS
    /// until the tokens it signed have expired). Returns the new key.
    pub async fn rotate_keys(&self) -> Result<KeyInfo> {
        let now = self.issuer.now_ms();
        let settings = self.issuer.settings();
        let kek = settings.key_encryption.as_deref();
        let record = keys::seal_record(keys::generate(settings.algorithm, now)?, kek)?;
        self.issuer.store().add_signing_key(&record, true).await?;
        self.issuer.reload_keys().await?;
        self.audit("signing_key_rotated", None, None, Some(record.kid.clone()))
            .await;
        Ok(KeyInfo {
            kid: record.kid,
            algorithm: record.algorithm,
            created_at_ms: record.created_at,
            retired_at_ms: None,
            published: true,
            signing: true,
            encrypted: kek.is_some(),
        })
    }

    /// The published JWKS (public keys only), as `/.well-known/jwks.json` serves it.
    pub async fn export_public_jwks(&self) -> Result<serde_json::Value> {
        let ring = self.issuer.reload_keys().await?;
        serde_json::to_value(ring.jwks())
            .map_err(|e| Error::Key(format!("serialising the JWKS: {e}")))
    }

    /// Every stored signing key with its **private** key in clear (PKCS#8 PEM), for a
    /// backup. Decrypted when stored encrypted. Handle the output like the keys. Audited
    /// (`signing_keys_exported`, with the key ids).
    pub async fn export_private_keys(&self) -> Result<serde_json::Value> {
        let records = self.issuer.key_records().await?;
        let kids: Vec<&str> = records.iter().map(|k| k.kid.as_str()).collect();
        self.audit("signing_keys_exported", None, None, Some(kids.join(" ")))
            .await;
        let keys: Vec<serde_json::Value> = records
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "kid": k.kid,
                    "alg": k.algorithm,
                    "created_at_ms": k.created_at,
                    "retired_at_ms": k.retired_at,
                    "private_key_pem": keys::pkcs8_pem(&k.private_der),
                })
            })
            .collect();
        Ok(serde_json::json!({ "keys": keys }))
    }

    /// The newest `limit` audit events.
    pub async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>> {
        self.issuer.store().audit_events(limit).await
    }
}
