//! The marketplace port, timed: every proxy-router call is counted in the upstream metrics
//! and in the current request's upstream wait (so the overhead histogram leaves it out). A
//! call made for a request runs in a span of its own, a child of the request's: the trace's
//! client span, whose context the proxy-router client sends upstream (`traceparent`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use morpheus_domain::ports::{
    ChatCall, ChatReply, Marketplace, MarketplaceError, Provider, ProviderCall,
};
use morpheus_domain::*;
use tracing::Instrument;

use crate::metrics::{Metrics, UpstreamErrorLabels, UpstreamLabels};
use crate::request_context::add_upstream_wait;

pub struct InstrumentedMarketplace {
    inner: Arc<dyn Marketplace>,
    metrics: Metrics,
}

impl InstrumentedMarketplace {
    pub fn new(inner: Arc<dyn Marketplace>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        call: &'static str,
        work: impl Future<Output = Result<T, MarketplaceError>>,
    ) -> Result<T, MarketplaceError> {
        timed(&self.metrics, call, work).await
    }
}

/// One of the operator's providers, timed like the proxy-router (call label `provider`).
pub struct InstrumentedProvider {
    inner: Arc<dyn Provider>,
    metrics: Metrics,
}

impl InstrumentedProvider {
    pub fn new(inner: Arc<dyn Provider>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Provider for InstrumentedProvider {
    async fn call(&self, call: ProviderCall) -> Result<ChatReply, MarketplaceError> {
        timed(&self.metrics, "provider", self.inner.call(call)).await
    }
}

/// Runs one upstream call in a span of its own, counting its time as the request's upstream
/// wait and in the upstream metrics.
async fn timed<T>(
    metrics: &Metrics,
    call: &'static str,
    work: impl Future<Output = Result<T, MarketplaceError>>,
) -> Result<T, MarketplaceError> {
    let started = Instant::now();
    // Background work (the sweep, the catalogue) has no request, and no trace.
    let span = if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        // `trace`: enabled by the trace exporter only.
        tracing::trace_span!(
            "upstream",
            otel.name = call,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "gen_ai.operation.name" = (call == "chat").then_some("chat"),
            "morpheus.upstream.call" = call,
        )
    };
    let result = work.instrument(span.clone()).await;
    let took = started.elapsed();
    add_upstream_wait(took);
    metrics
        .upstream_duration
        .get_or_create(&UpstreamLabels { call })
        .observe(took.as_secs_f64());
    if let Err(error) = &result {
        span.record("otel.status_code", "error");
        span.record("error.type", kind(error));
        metrics
            .upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                call,
                kind: kind(error),
            })
            .inc();
    }
    result
}

/// A bounded label for an error.
fn kind(error: &MarketplaceError) -> &'static str {
    match error {
        MarketplaceError::NotConfigured => "not_configured",
        MarketplaceError::Unreachable(_) => "unreachable",
        MarketplaceError::Timeout(_) => "timeout",
        MarketplaceError::Unauthorized => "unauthorized",
        MarketplaceError::SessionGone(_) => "session_gone",
        MarketplaceError::Rejected { .. } => "rejected",
        MarketplaceError::Provider { .. } => "provider",
        MarketplaceError::InvalidResponse(_) => "invalid_response",
    }
}

#[async_trait]
impl Marketplace for InstrumentedMarketplace {
    async fn health(&self) -> Result<(), MarketplaceError> {
        self.timed("health", self.inner.health()).await
    }
    async fn models(&self) -> Result<Vec<MarketModel>, MarketplaceError> {
        self.timed("models", self.inner.models()).await
    }
    async fn rated_bids(&self, model: &ModelId) -> Result<Vec<RatedBid>, MarketplaceError> {
        self.timed("rated_bids", self.inner.rated_bids(model)).await
    }
    async fn bid(&self, id: &BidId) -> Result<Option<Bid>, MarketplaceError> {
        self.timed("bid", self.inner.bid(id)).await
    }
    async fn approve(
        &self,
        spender: &EthAddress,
        amount: u128,
    ) -> Result<TxHash, MarketplaceError> {
        self.timed("approve", self.inner.approve(spender, amount))
            .await
    }
    async fn open_model_session(
        &self,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        self.timed(
            "open_model_session",
            self.inner.open_model_session(model, terms),
        )
        .await
    }
    async fn open_bid_session(
        &self,
        bid: &BidId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        self.timed("open_bid_session", self.inner.open_bid_session(bid, terms))
            .await
    }
    async fn session(&self, id: &SessionId) -> Result<UpstreamSession, MarketplaceError> {
        self.timed("session", self.inner.session(id)).await
    }
    async fn close_session(&self, id: &SessionId) -> Result<TxHash, MarketplaceError> {
        self.timed("close_session", self.inner.close_session(id))
            .await
    }
    async fn wallet_sessions(&self) -> Result<Vec<UpstreamSession>, MarketplaceError> {
        self.timed("wallet_sessions", self.inner.wallet_sessions())
            .await
    }
    /// Timed to the response head; a stream's events are the relay's business.
    async fn chat(&self, call: ChatCall) -> Result<ChatReply, MarketplaceError> {
        self.timed("chat", self.inner.chat(call)).await
    }
    async fn balance(&self) -> Result<WalletBalance, MarketplaceError> {
        self.timed("balance", self.inner.balance()).await
    }
}
