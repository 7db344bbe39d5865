//! Connect tokens minted in advance with the gateway's own library ([`telegraphy::node::auth::Auth::mint`]: signed
//! with `auth.secret` and registered single-use in the KV bucket), so the measured connects pay only for what a
//! browser's connect costs.

use std::collections::HashMap;

use anyhow::Context;
use futures_util::{stream, StreamExt};
use telegraphy::{config::Settings, node::auth::Auth, protocol::token::Grants};

/// Environment variable holding the gateway's signing secret (the same one the gateway reads).
pub const SECRET_ENV: &str = "TELEGRAPHY_AUTH__SECRET";

pub struct Minter {
    auth: Auth,
    ttl: u64,
}

impl Minter {
    /// Connects to NATS at `nats` and prepares minting with the secret from [`SECRET_ENV`].
    pub async fn new(nats: &str, tokens_bucket: &str, ttl: u64) -> anyhow::Result<Self> {
        let secret =
            std::env::var(SECRET_ENV).with_context(|| format!("{SECRET_ENV} must hold the gateway's auth.secret"))?;
        let env = HashMap::from([
            (SECRET_ENV.to_string(), secret),
            ("TELEGRAPHY_NATS__URL".to_string(), nats.to_string()),
            ("TELEGRAPHY_AUTH__TOKENS_BUCKET".to_string(), tokens_bucket.to_string()),
        ]);
        let settings = Settings::load_from(None, Some(env))?;
        let client = telegraphy::node::nats::connect_once(nats).await?;
        Ok(Minter { auth: Auth::new(&settings, client)?, ttl })
    }

    /// `count` tokens for users `<user_prefix><i>` allowed `allow`, minted `parallel` at a time.
    pub async fn mint(
        &self,
        user_prefix: &str,
        first: usize,
        count: usize,
        allow: &str,
        parallel: usize,
    ) -> anyhow::Result<Vec<String>> {
        let allow = vec![allow.to_string()];
        let tokens: Vec<_> = stream::iter(first..first + count)
            .map(|i| {
                let allow = &allow;
                async move { self.auth.mint(&format!("{user_prefix}{i}"), allow, self.ttl).await }
            })
            .buffered(parallel.max(1))
            .collect()
            .await;
        tokens.into_iter().collect::<Result<_, _>>().context("minting tokens")
    }

    /// One token of user `user` allowed `allow` with action `grants` (proto/PROTOCOL.md section 13).
    pub async fn mint_with_grants(&self, user: &str, allow: &str, grants: Grants) -> anyhow::Result<String> {
        let allow = vec![allow.to_string()];
        self.auth.mint_with_grants(user, &allow, self.ttl, None, grants).await.context("minting a token")
    }
}
