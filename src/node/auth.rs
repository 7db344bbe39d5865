//! The connect step: who a socket is and what it may subscribe to (proto/PROTOCOL.md section 4).
//!
//! Token format and signatures live in [`crate::protocol::token`]; this module adds what needs NATS:
//! - single use: a connect token's `jti` is consumed in the JetStream KV bucket `auth.tokens_bucket` by a
//!   compare-and-swap (`"1"` -> `"used"` at the read revision), so exactly one connect wins across replicas;
//! - revocation: every node watches `auth.revocations_bucket` and keeps the latest revocation time per
//!   user/session in memory; [`Auth::watch_revocations`] also tells the caller so it can close live sockets;
//! - minting (CLI and HTTP API) registers the `jti` with a create-only write.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{
    config::{ConfigError, Settings, REVOCATIONS_BUCKET_MAX_AGE, TOKENS_BUCKET_MAX_AGE},
    node::nats::{self, BoxError, NatsError},
    protocol::names,
    protocol::token::{self, Claims, Grants, Keyring, TokenKind},
};

/// An authenticated connection's identity.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user (`sub` claim; empty when anonymous). Shared: once the connection is identified it is the
    /// connection table's string, one per user on the node (the crate-private `Connections::identify` interns it).
    pub sub: Arc<str>,
    pub allow: Vec<String>,
    /// Session id: new on a fresh connect, kept across resumes (so a session can be revoked). Shared like `sub`.
    pub session: Arc<str>,
    /// When the session was first authenticated (unix seconds): the `iat` of the connect token, kept as the
    /// `iat` of every resume token of the session, so a revocation covers all of them (see [`Auth::resume_token`]).
    pub auth_time: i64,
    /// The token's `info` claim (shown by presence), kept across resumes.
    pub info: Option<serde_json::Value>,
    /// The token's action grants (section 13), kept across resumes; None when it has none (boxed: most
    /// connections have none and pay one pointer).
    pub grants: Option<Box<Grants>>,
}

impl Identity {
    /// May this identity subscribe to `pattern`? (one of `allow` contains it)
    pub fn permits(&self, pattern: &str) -> bool {
        self.allow.iter().any(|a| names::contains(a, pattern))
    }

    /// The action grants (empty when the token had none).
    pub fn grants(&self) -> &Grants {
        static NONE: Grants = Grants { publish: Vec::new(), publish_ephemeral: Vec::new(), rpc: Vec::new() };
        self.grants.as_deref().unwrap_or(&NONE)
    }
}

/// The grants as an identity keeps them: None when empty.
fn boxed(grants: Grants) -> Option<Box<Grants>> {
    (!grants.is_empty()).then(|| Box::new(grants))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The client's fault; the reason goes to the log only.
    #[error("unauthorized: {0}")]
    Rejected(&'static str),
    /// NATS/KV could not answer (or the revocations are not loaded yet: [`RevocationsNotLoaded`]); the token was
    /// not consumed and may be retried.
    #[error("token store unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Why a token connect right after start-up is [`AuthError::Unavailable`]: the revocation watch has not replayed
/// the stored revocations yet.
#[derive(Debug, thiserror::Error)]
#[error("revocations not loaded yet")]
pub struct RevocationsNotLoaded;

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("invalid allow pattern {0:?}")]
    BadPattern(String),
    #[error("ttl must be 1..{max} seconds")]
    BadTtl { max: u64 },
    #[error("too many allow patterns (max {0})")]
    TooManyPatterns(usize),
    #[error("invalid {0} grant: at most 64 valid patterns")]
    BadGrant(&'static str),
    #[error("user id too long (max 255 bytes)")]
    BadUser,
    #[error(transparent)]
    BadInfo(#[from] token::InfoError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("could not register the token: {0}")]
    Register(#[source] async_nats::jetstream::kv::CreateError),
}

/// A revocation seen in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    User(String),
    Session(String),
}

pub struct Auth {
    keyring: Keyring,
    client: async_nats::Client,
    single_use: bool,
    tokens_bucket: String,
    /// Replicas of the KV buckets when this node creates them (`history.replicas`: 3 on a 3-node cluster).
    kv_replicas: usize,
    revocations_bucket: String,
    resume_ttl: u64,
    anonymous_allow: Vec<String>,
    /// `auth.max_session_age`, seconds from [`Identity::auth_time`].
    max_session_age: i64,
    tokens: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    /// Revocations seen, by KV key.
    revoked: RwLock<RevocationMap>,
    /// Becomes true once the watch has replayed the revocations stored at start-up.
    loaded: tokio::sync::watch::Sender<bool>,
}

/// How long a token connect waits for the revocation watch's first replay (only right after start-up): until
/// then a revoked user's older tokens could not be told apart.
const REVOCATIONS_LOAD_WAIT: Duration = Duration::from_secs(5);

/// How long minting keeps retrying the token's registration while the token bucket cannot answer. A JetStream
/// stream whose leader died elects another within about 10 s (nats-server election timeouts are 4-9 s).
pub const MINT_RETRY_FOR: Duration = Duration::from_secs(20);

/// KV key of a user's revocation.
pub fn user_key(sub: &str) -> String {
    format!("user.{}", URL_SAFE_NO_PAD.encode(sub.as_bytes()))
}

/// KV key of a session's revocation.
pub fn session_key(sid: &str) -> String {
    format!("session.{sid}")
}

impl Auth {
    pub fn new(settings: &Settings, client: async_nats::Client) -> Result<Self, ConfigError> {
        let secrets = settings.secrets()?;
        let keyring =
            Keyring::new(&secrets).map_err(|e| ConfigError::Invalid { key: "auth.secret", problem: e.to_string() })?;
        Ok(Auth {
            keyring,
            client,
            single_use: settings.auth.single_use,
            tokens_bucket: settings.auth.tokens_bucket.clone(),
            kv_replicas: settings.history.replicas,
            revocations_bucket: settings.auth.revocations_bucket.clone(),
            resume_ttl: settings.auth.resume_ttl,
            anonymous_allow: settings.auth.anonymous_allow.clone(),
            max_session_age: settings.auth.max_session_age as i64,
            tokens: tokio::sync::OnceCell::new(),
            revoked: RwLock::new(RevocationMap::default()),
            loaded: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The tokens bucket, looked up (or created) once and cached.
    async fn tokens_kv(&self) -> Result<&async_nats::jetstream::kv::Store, NatsError> {
        self.tokens.get_or_try_init(|| self.lookup_tokens_kv()).await
    }

    /// Looks the tokens bucket up, creating it when missing.
    async fn lookup_tokens_kv(&self) -> Result<async_nats::jetstream::kv::Store, NatsError> {
        nats::key_value(&self.client, &self.tokens_bucket, TOKENS_BUCKET_MAX_AGE, self.kv_replicas).await
    }

    /// Checks a `connect` frame's credentials. `session` is the id for a fresh (non-resumed) session.
    pub async fn connect(
        &self,
        token: Option<&str>,
        resume: Option<&str>,
        session: String,
    ) -> Result<Identity, AuthError> {
        let now = token::now_unix();
        let (presented, expected) = match (token, resume) {
            (Some(t), None) => (t, TokenKind::Connect),
            (None, Some(r)) => (r, TokenKind::Resume),
            (None, None) if !self.anonymous_allow.is_empty() => {
                return Ok(Identity {
                    sub: Arc::from(""),
                    allow: self.anonymous_allow.clone(),
                    session: session.into(),
                    auth_time: now,
                    info: None,
                    grants: None,
                });
            }
            (None, None) => return Err(AuthError::Rejected("no token")),
            (Some(_), Some(_)) => return Err(AuthError::Rejected("both token and resume")),
        };
        let (kind, claims) = self.keyring.verify(presented, now).map_err(|e| AuthError::Rejected(reason(&e)))?;
        if kind != expected {
            return Err(AuthError::Rejected("wrong token kind"));
        }
        // A session ends `max_session_age` after its first authentication, however often it was resumed.
        if now >= self.session_end(claims.iat) {
            return Err(AuthError::Rejected("session expired"));
        }
        // An anonymous session resumes only while anonymous access is on, with today's anonymous patterns.
        let allow = match kind {
            TokenKind::Resume if claims.sub.is_empty() => {
                if self.anonymous_allow.is_empty() {
                    return Err(AuthError::Rejected("anonymous access is off"));
                }
                self.anonymous_allow.clone()
            }
            _ => {
                // Held for the connection's life: without the growth slack of its parsing (4 slots for 1-2).
                let mut allow = claims.allow;
                allow.shrink_to_fit();
                allow
            }
        };
        let session = match kind {
            TokenKind::Resume => claims.sid.clone().ok_or(AuthError::Rejected("resume token without sid"))?,
            TokenKind::Connect => session,
        };
        self.revocations_loaded_within(REVOCATIONS_LOAD_WAIT).await?;
        if self.is_revoked(&claims.sub, Some(&session), claims.iat) {
            return Err(AuthError::Rejected("revoked"));
        }
        if kind == TokenKind::Connect && self.single_use {
            self.consume(&claims.jti, claims.rev).await?;
        }
        Ok(Identity {
            sub: claims.sub.into(),
            allow,
            session: session.into(),
            auth_time: claims.iat,
            info: claims.info,
            grants: boxed(claims.grants),
        })
    }

    /// Marks a connect token used; exactly one caller per `jti` succeeds, on any node: `"1"` -> `"used"`,
    /// guarded by the registration's revision. A token that carries it (`rev`, signed) needs one round trip;
    /// one without it (minted by an older minter, or whose registration answer was lost) reads the entry first.
    async fn consume(&self, jti: &str, rev: Option<u64>) -> Result<(), AuthError> {
        let kv = self.tokens_kv().await.map_err(|e| AuthError::Unavailable(e.into()))?;
        let revision = match rev {
            Some(revision) => revision,
            None => {
                let entry = kv.entry(jti).await.map_err(|e| AuthError::Unavailable(e.into()))?;
                let Some(entry) = entry else {
                    return Err(AuthError::Rejected("token not registered"));
                };
                if entry.operation != async_nats::jetstream::kv::Operation::Put || entry.value.as_ref() != b"1" {
                    return Err(AuthError::Rejected("token already used"));
                }
                entry.revision
            }
        };
        match kv.update(jti, Bytes::from_static(b"used"), revision).await {
            Ok(_) => Ok(()),
            // Used already, never registered at that revision, or (with `rev`) not registered at all.
            Err(e) if e.kind() == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision => {
                Err(AuthError::Rejected(if rev.is_some() {
                    "token used or not registered"
                } else {
                    "token already used"
                }))
            }
            Err(e) => Err(AuthError::Unavailable(e.into())),
        }
    }

    /// A fresh resume token for `identity`, and its lifetime in seconds.
    ///
    /// Its `iat` is the session's [`Identity::auth_time`], not now: a replica that has not yet seen a
    /// revocation (the watch lags by milliseconds) may still resume a revoked session, but the token it hands
    /// out then is older than the revocation and is refused everywhere once the revocation has arrived. With
    /// `iat = now` such a token would postdate the revocation and could be refreshed for ever.
    /// Its `exp` never passes the end of the session ([`Auth::session_end`]).
    pub fn resume_token(&self, identity: &Identity) -> (String, u64) {
        let now = token::now_unix();
        let exp = (now + self.resume_ttl as i64).min(self.session_end(identity.auth_time));
        let claims = Claims {
            jti: token::new_jti(),
            sub: identity.sub.to_string(),
            allow: identity.allow.clone(),
            iat: identity.auth_time.min(now),
            exp,
            rev: None,
            sid: Some(identity.session.to_string()),
            info: identity.info.clone(),
            grants: identity.grants().clone(),
        };
        (self.keyring.sign(TokenKind::Resume, &claims), (exp - now).max(0) as u64)
    }

    /// When (unix seconds) a session first authenticated at `auth_time` ends: connects and resumes are refused
    /// from then on and its live sockets are closed (4001 "session expired").
    pub fn session_end(&self, auth_time: i64) -> i64 {
        auth_time.saturating_add(self.max_session_age)
    }

    /// Mints a connect token and registers its `jti` (create-only) so it can be used once. The token carries
    /// the registration's revision (`rev`), so that consuming it is a single revision-guarded write.
    pub async fn mint(&self, sub: &str, allow: &[String], ttl: u64) -> Result<String, MintError> {
        self.mint_with_info(sub, allow, ttl, None).await
    }

    /// [`Auth::mint`] with an `info` claim (presence, proto/PROTOCOL.md section 11), checked first.
    pub async fn mint_with_info(
        &self,
        sub: &str,
        allow: &[String],
        ttl: u64,
        info: Option<serde_json::Value>,
    ) -> Result<String, MintError> {
        self.mint_with_grants(sub, allow, ttl, info, Grants::default()).await
    }

    /// [`Auth::mint_with_info`] with action grants (proto/PROTOCOL.md section 13), checked first.
    pub async fn mint_with_grants(
        &self,
        sub: &str,
        allow: &[String],
        ttl: u64,
        info: Option<serde_json::Value>,
        grants: Grants,
    ) -> Result<String, MintError> {
        check_mint_request(sub, allow, ttl)?;
        check_grants(&grants)?;
        if let Some(info) = &info {
            token::check_info(info)?;
        }
        let mut claims = Claims::new(sub, allow.to_vec(), token::now_unix(), ttl as i64, None);
        claims.info = info;
        claims.grants = grants;
        claims.rev = self.register(&claims.jti).await?;
        Ok(self.keyring.sign(TokenKind::Connect, &claims))
    }

    /// Creates `jti` in the tokens bucket, retrying for [`MINT_RETRY_FOR`] while JetStream cannot answer (after
    /// a NATS node died, the bucket's stream has no leader until its replicas elect one: seconds). A retry that
    /// finds the key already there means an earlier attempt was stored and only its answer was lost: 128
    /// random bits do not collide otherwise; its revision is then unknown (`None`).
    async fn register(&self, jti: &str) -> Result<Option<u64>, MintError> {
        use async_nats::jetstream::kv::CreateErrorKind;
        let deadline = tokio::time::Instant::now() + MINT_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        let mut sent = false;
        loop {
            // A retry looks the bucket up again: it re-creates a bucket deleted behind the node's back (the
            // cached handle is only its name).
            let kv = match sent {
                false => self.tokens_kv().await.cloned(),
                true => self.lookup_tokens_kv().await,
            };
            let error = match kv {
                Err(e) => MintError::Nats(e),
                Ok(kv) => match kv.create(jti, Bytes::from_static(b"1")).await {
                    Ok(revision) => return Ok(Some(revision)),
                    Err(e) if sent && e.kind() == CreateErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => {
                        sent = true;
                        MintError::Register(e)
                    }
                },
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::warn!(error = %error, retry_in_ms = pause.as_millis() as u64, "token registration failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Was this user or session revoked at or after `iat`?
    pub fn is_revoked(&self, sub: &str, session: Option<&str>, iat: i64) -> bool {
        let revoked = self.revoked.read().expect("revoked lock");
        let hit = |key: String| revoked.get(&key).is_some_and(|at| iat <= at);
        (!sub.is_empty() && hit(user_key(sub))) || session.is_some_and(|s| hit(session_key(s)))
    }

    /// Watches the revocations bucket for ever (re-subscribing after failures) and calls `on_revoke` for every
    /// revocation new to this node: those stored when the node starts, then each new one. A re-subscription
    /// replays the bucket; a key it already knew (at the same or a later time) is not reported again.
    pub async fn watch_revocations(self: Arc<Self>, on_revoke: impl Fn(Revoked) + Send + Sync + 'static) {
        loop {
            match self.watch_once(&on_revoke).await {
                Ok(()) => tracing::warn!("revocation watch ended; restarting"),
                Err(e) => tracing::warn!(error = %e, "revocation watch failed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self, on_revoke: &(impl Fn(Revoked) + Send + Sync)) -> Result<(), BoxError> {
        let kv = nats::key_value(&self.client, &self.revocations_bucket, REVOCATIONS_BUCKET_MAX_AGE, self.kv_replicas)
            .await?;
        let mut watch = kv.watch_with_history(">").await?;
        // The replay of what is stored ends with the entry that has nothing pending; an empty bucket has none.
        if kv.status().await?.values() == 0 {
            self.loaded.send_replace(true);
        }
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            if let Some((revoked, at)) = parse_revocation(&entry) {
                // Every (re)start of the watch replays the whole bucket: act only on a revocation this node did
                // not know yet (or a later one for the same key), so a replay does not close sockets that were
                // authorised after the stored revocation.
                let fresh = self.revoked.write().expect("revoked lock").insert(&entry.key, at, token::now_unix());
                if fresh {
                    on_revoke(revoked);
                }
            }
            if entry.delta == 0 {
                self.loaded.send_replace(true);
            }
        }
        Ok(())
    }

    /// True once the revocations stored when the node started have been loaded (until then a token connect
    /// waits, see [`Auth::connect`]); a readiness check can use it.
    pub fn revocations_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    async fn revocations_loaded_within(&self, limit: Duration) -> Result<(), AuthError> {
        let mut loaded = self.loaded.subscribe();
        let loaded = tokio::time::timeout(limit, async { loaded.wait_for(|loaded| *loaded).await.is_ok() }).await;
        if loaded == Ok(true) {
            Ok(())
        } else {
            Err(AuthError::Unavailable(RevocationsNotLoaded.into()))
        }
    }
}

/// How often (seconds) [`RevocationMap::insert`] drops the revocations the bucket has aged out.
const PRUNE_EVERY: i64 = 60;

/// The revocations a node has seen: KV key (`user.<b64>` / `session.<sid>`) -> revoked at (unix seconds).
///
/// An entry is forgotten once it is older than the bucket's `max_age` ([`REVOCATIONS_BUCKET_MAX_AGE`]), as the
/// bucket forgets it: by then every session it could refuse (authenticated at or before it) is past
/// `auth.max_session_age` (at most that `max_age`) and refused anyway, so the map stays bounded by what the
/// bucket holds.
#[derive(Default)]
struct RevocationMap {
    at: HashMap<String, i64>,
    pruned_at: i64,
}

impl RevocationMap {
    fn get(&self, key: &str) -> Option<i64> {
        self.at.get(key).copied()
    }

    /// Records a revocation seen at `now`; true when it is new to this node (or later than the one known for
    /// the key). Prunes aged-out entries at most every [`PRUNE_EVERY`] seconds; an aged-out revocation is
    /// ignored.
    fn insert(&mut self, key: &str, at: i64, now: i64) -> bool {
        let horizon = now - REVOCATIONS_BUCKET_MAX_AGE.as_secs() as i64;
        if now - self.pruned_at >= PRUNE_EVERY {
            self.at.retain(|_, at| *at >= horizon);
            self.pruned_at = now;
        }
        if at < horizon || self.get(key).is_some_and(|known| known >= at) {
            return false;
        }
        self.at.insert(key.to_string(), at);
        true
    }
}

/// A put in the revocations bucket: who, and since when (unix seconds). Other entries are skipped.
fn parse_revocation(entry: &async_nats::jetstream::kv::Entry) -> Option<(Revoked, i64)> {
    if entry.operation != async_nats::jetstream::kv::Operation::Put {
        return None;
    }
    let Some(at) = std::str::from_utf8(&entry.value).ok().and_then(|v| v.trim().parse::<i64>().ok()) else {
        tracing::warn!(key = %entry.key, "ignoring revocation with a value that is not unix seconds");
        return None;
    };
    let revoked = if let Some(b64) = entry.key.strip_prefix("user.") {
        Revoked::User(URL_SAFE_NO_PAD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok())?)
    } else if let Some(sid) = entry.key.strip_prefix("session.") {
        Revoked::Session(sid.to_string())
    } else {
        return None;
    };
    Some((revoked, at))
}

/// The checks [`Auth::mint`] makes on its arguments, without NATS (the CLI can refuse bad arguments first).
pub fn check_mint_request(sub: &str, allow: &[String], ttl: u64) -> Result<(), MintError> {
    let max = TOKENS_BUCKET_MAX_AGE.as_secs();
    if ttl == 0 || ttl > max {
        return Err(MintError::BadTtl { max });
    }
    if sub.len() > 255 {
        return Err(MintError::BadUser);
    }
    if allow.len() > token::MAX_ALLOW {
        return Err(MintError::TooManyPatterns(token::MAX_ALLOW));
    }
    if let Some(bad) = allow.iter().find(|p| names::validate_pattern(p).is_err()) {
        return Err(MintError::BadPattern(bad.clone()));
    }
    Ok(())
}

/// The action grants a minter may sign: each at most 64 valid patterns.
pub fn check_grants(grants: &Grants) -> Result<(), MintError> {
    grants.check().map_err(MintError::BadGrant)
}

/// Records a revocation (used by the CLI and tests; backends can write the same key themselves).
pub async fn revoke(client: &async_nats::Client, bucket: &str, key: &str) -> Result<(), NatsError> {
    revoke_in(client, bucket, key, 1).await
}

/// [`revoke`], creating the bucket with `replicas` if it does not exist yet.
pub async fn revoke_in(client: &async_nats::Client, bucket: &str, key: &str, replicas: usize) -> Result<(), NatsError> {
    let kv = nats::key_value(client, bucket, REVOCATIONS_BUCKET_MAX_AGE, replicas).await?;
    let now = token::now_unix().to_string();
    kv.put(key, Bytes::from(now))
        .await
        .map(|_| ())
        .map_err(|e| NatsError::Bucket { bucket: bucket.to_string(), source: e.into() })
}

fn reason(e: &token::TokenError) -> &'static str {
    match e.category() {
        "expired" => "token expired",
        "bad_signature" => "bad signature",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use async_nats::jetstream::kv::{CreateError, CreateErrorKind, UpdateError, UpdateErrorKind};

    use super::*;

    #[test]
    fn an_unavailable_token_store_keeps_the_nats_error_as_source() {
        let e = AuthError::Unavailable(UpdateError::new(UpdateErrorKind::TimedOut).into());
        let source = e.source().expect("source");
        assert_eq!(source.downcast_ref::<UpdateError>().map(|u| u.kind()), Some(UpdateErrorKind::TimedOut));
        assert_eq!(e.to_string(), format!("token store unavailable: {source}"));
        let e = AuthError::Unavailable(RevocationsNotLoaded.into());
        assert!(e.source().expect("source").is::<RevocationsNotLoaded>());
        assert_eq!(e.to_string(), "token store unavailable: revocations not loaded yet");
    }

    #[test]
    fn a_failed_registration_keeps_the_nats_error_as_source() {
        let e = MintError::Register(CreateError::new(CreateErrorKind::Publish));
        let source = e.source().expect("source");
        assert_eq!(source.downcast_ref::<CreateError>().map(|c| c.kind()), Some(CreateErrorKind::Publish));
        assert_eq!(e.to_string(), format!("could not register the token: {source}"));
    }

    const DAY: i64 = REVOCATIONS_BUCKET_MAX_AGE.as_secs() as i64;

    #[test]
    fn revocations_are_forgotten_after_the_buckets_max_age() {
        let t0 = 1_800_000_000;
        let mut map = RevocationMap::default();
        assert!(map.insert("user.YQ", t0, t0));
        assert!(!map.insert("user.YQ", t0, t0 + 1), "a replay is not new");
        assert!(map.insert("user.YQ", t0 + 5, t0 + 5), "a later revocation of the same key is");
        assert!(map.insert("session.s1", t0 + 1000, t0 + 1000));
        // A day later the first key has aged out of the bucket and the map; the second not yet.
        let later = t0 + 5 + DAY + 1;
        assert!(map.insert("session.s2", later, later));
        assert_eq!(map.get("user.YQ"), None, "pruned");
        assert_eq!(map.get("session.s1"), Some(t0 + 1000));
        assert_eq!(map.get("session.s2"), Some(later));
        assert!(!map.insert("user.old", t0, later), "an aged-out revocation is ignored");
        assert_eq!(map.at.len(), 2);
        // Pruning runs at most every PRUNE_EVERY seconds, and does run then.
        let much_later = later + DAY + PRUNE_EVERY;
        assert!(map.insert("session.s3", much_later, much_later));
        assert_eq!(map.at.keys().map(String::as_str).collect::<Vec<_>>(), ["session.s3"]);
    }
}
