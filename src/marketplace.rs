//! Wiring of the marketplace: the proxy-router client (or the demo simulator, or nothing), and
//! the model catalogue's refresh (run by the `catalogue_refresh` background task).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use morpheus_domain::model::*;
use morpheus_domain::ports::*;
use morpheus_domain::services::ModelCatalogue;
use morpheus_router_sim::{SimConfig, SimHandle, Simulator};
use morpheus_upstream::{ActiveModelsFeed, ProxyRouterClient, ProxyRouterConfig};
use secrecy::SecretString;

use crate::configuration::{Environment, Settings};

/// The marketplace as the rest of the gateway sees it.
pub struct MarketplaceWiring {
    pub market: Arc<dyn Marketplace>,
    pub feed: Option<Arc<dyn ModelFeed>>,
    /// `false` when no proxy-router is configured.
    pub configured: bool,
    /// The in-process simulator of `--simulate-marketplace`; kept so it lives as long as the
    /// gateway.
    pub simulator: Option<SimHandle>,
}

/// # Errors
/// A bad URL, a simulator asked for in production, or a simulator that cannot bind.
pub async fn connect(settings: &Settings) -> anyhow::Result<MarketplaceWiring> {
    let mut url = settings.proxy_router_url.clone();
    let mut user = settings.proxy_router_user.clone();
    let mut password = settings.proxy_router_password.clone();
    let mut simulator = None;
    if settings.simulate_marketplace {
        anyhow::ensure!(
            settings.env != Environment::Production,
            "--simulate-marketplace is a local demo and is refused when MORPHEUS_ENV=production"
        );
        anyhow::ensure!(
            url.is_none(),
            "--simulate-marketplace and a proxy-router URL exclude each other"
        );
        let config = SimConfig::default();
        let credentials = (config.user.clone(), config.password.clone());
        let handle = Simulator::start(config, "127.0.0.1:0".parse()?)
            .await
            .context("starting the marketplace simulator")?;
        tracing::warn!(
            address = %handle.base_url(),
            "SIMULATED MARKETPLACE: answers come from morpheus-router-sim, not from real providers"
        );
        url = Some(handle.base_url());
        user = Some(credentials.0);
        password = Some(SecretString::from(credentials.1));
        simulator = Some(handle);
    }
    let feed: Option<Arc<dyn ModelFeed>> = match &settings.active_models_url {
        Some(feed_url) => Some(Arc::new(ActiveModelsFeed::new(
            feed_url,
            Duration::from_millis(settings.proxy_router_request_timeout_ms),
        )?)),
        None => None,
    };
    let Some(base_url) = url else {
        tracing::warn!(
            "no proxy-router configured (MORPHEUS_PROXY_ROUTER_URL): session routes answer 503, and inference routes too unless a providers file serves the model"
        );
        return Ok(MarketplaceWiring {
            market: Arc::new(Unconfigured),
            feed,
            configured: false,
            simulator,
        });
    };
    let client = ProxyRouterClient::new(proxy_router_config(settings, base_url, user, password))?;
    Ok(MarketplaceWiring {
        market: Arc::new(client),
        feed,
        configured: true,
        simulator,
    })
}

/// The client's configuration: where the node is, its credentials, and the settings' limits.
pub fn proxy_router_config(
    settings: &Settings,
    base_url: String,
    user: Option<String>,
    password: Option<SecretString>,
) -> ProxyRouterConfig {
    ProxyRouterConfig {
        base_url,
        user,
        password,
        connect_timeout: Duration::from_millis(settings.proxy_router_connect_timeout_ms),
        first_byte_timeout: Duration::from_millis(settings.proxy_router_first_byte_timeout_ms),
        idle_timeout: Duration::from_millis(settings.proxy_router_idle_timeout_ms),
        request_timeout: Duration::from_millis(settings.proxy_router_request_timeout_ms),
        chat_timeout: Duration::from_millis(settings.proxy_router_chat_timeout_ms),
        open_timeout: Duration::from_millis(settings.proxy_router_open_timeout_ms),
        open_recovery_window: Duration::from_millis(settings.proxy_router_open_recovery_ms),
        max_body_bytes: ProxyRouterConfig::MAX_BODY_BYTES,
        max_event_bytes: ProxyRouterConfig::MAX_EVENT_BYTES,
    }
}

/// Loads the model list once. Failures keep the previous list (stale beats empty).
pub async fn refresh_catalogue(
    market: &dyn Marketplace,
    feed: Option<&dyn ModelFeed>,
    catalogue: &ModelCatalogue,
) -> Result<(), MarketplaceError> {
    let all = market.models().await?;
    let listed = match feed {
        Some(feed) => feed.active_models().await?,
        None => all.clone(),
    };
    tracing::debug!(
        listed = listed.len(),
        all = all.len(),
        "model catalogue refreshed"
    );
    catalogue.replace(listed, all, Utc::now());
    Ok(())
}

/// The marketplace when no proxy-router is configured: every call says so. The gateway never
/// falls back to the simulator on its own.
struct Unconfigured;

#[async_trait]
impl Marketplace for Unconfigured {
    async fn health(&self) -> Result<(), MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn models(&self) -> Result<Vec<MarketModel>, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn rated_bids(&self, _: &ModelId) -> Result<Vec<RatedBid>, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn bid(&self, _: &BidId) -> Result<Option<Bid>, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn approve(&self, _: &EthAddress, _: u128) -> Result<TxHash, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn open_model_session(
        &self,
        _: &ModelId,
        _: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn open_bid_session(
        &self,
        _: &BidId,
        _: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn session(&self, _: &SessionId) -> Result<UpstreamSession, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn close_session(&self, _: &SessionId) -> Result<TxHash, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn wallet_sessions(&self) -> Result<Vec<UpstreamSession>, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn chat(&self, _: ChatCall) -> Result<ChatReply, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
    async fn balance(&self) -> Result<WalletBalance, MarketplaceError> {
        Err(MarketplaceError::NotConfigured)
    }
}
