//! [`ActiveModelsFeed`]: the operator's list of models to offer (the original's
//! `active_models.json`), fetched over plain HTTP without credentials.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use morpheus_domain::MarketModel;
use morpheus_domain::ports::{MarketplaceError, ModelFeed};
use reqwest::Url;
use reqwest::header::ACCEPT;

use crate::client::decode;
use crate::config::normalise_base;
use crate::transport::{self, Limits};
use crate::wire;

/// The feed's body is a model list; more than this is not a model list.
const MAX_FEED_BYTES: usize = 8 * 1024 * 1024;

/// `GET <url>` → `{"models":[Model…]}` in the chain's PascalCase shape.
#[derive(Clone)]
pub struct ActiveModelsFeed {
    http: reqwest::Client,
    url: Url,
    timeout: Duration,
}

impl ActiveModelsFeed {
    /// `timeout` bounds one whole fetch (each retry included separately).
    pub fn new(url: impl AsRef<str>, timeout: Duration) -> anyhow::Result<Self> {
        let raw = url.as_ref().trim();
        // Reuse the base-URL checks (scheme, host); credentials in the URL are not supported.
        let checked = normalise_base(raw).context("invalid active-models feed URL")?;
        if checked.user.is_some() || checked.password.is_some() {
            anyhow::bail!("the active-models feed URL must not carry credentials");
        }
        let url = Url::parse(raw).context("invalid active-models feed URL")?;
        Ok(Self {
            http: transport::build_client(timeout.min(Duration::from_secs(3)))?,
            url,
            timeout,
        })
    }
}

impl std::fmt::Debug for ActiveModelsFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveModelsFeed")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl ModelFeed for ActiveModelsFeed {
    async fn active_models(&self) -> Result<Vec<MarketModel>, MarketplaceError> {
        let limits = Limits {
            first_byte: self.timeout,
            idle: self.timeout,
            total: self.timeout,
            max_body: MAX_FEED_BYTES,
        };
        let answer = transport::read_with_retries(
            || {
                self.http
                    .get(self.url.clone())
                    .header(ACCEPT, "application/json")
            },
            limits,
            true,
        )
        .await
        .map_err(|f| f.error)?;
        decode(&answer, wire::models).map_err(|f| f.error)
    }
}
