//! [`ProxyRouterClient`]: the proxy-router's admin calls (models, bids, sessions, wallet) and
//! the [`Marketplace`] port. Chat lives in `chat.rs`, session opens in `open_recovery.rs`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use morpheus_domain::ports::{ChatCall, ChatReply, Endpoint, Marketplace, MarketplaceError};
use morpheus_domain::{
    Bid, BidId, EthAddress, MarketModel, ModelId, RatedBid, SessionId, SessionTerms, TxHash,
    UpstreamSession, WalletBalance,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use secrecy::ExposeSecret;

use crate::config::{ProxyRouterConfig, normalise_base};
use crate::errors::Failure;
use crate::transport::{self, Answer, Limits};
use crate::wire;

/// How many handed-out session ids are remembered (see `open_recovery.rs`).
const REMEMBERED_SESSIONS: usize = 4096;

/// Sessions per page of the wallet's list: `limit` is a `uint8` on the node
/// (proxy-router-behaviour.md §1 row 9, `req.go:32-36,58-60`).
const WALLET_PAGE: u32 = 100;

/// How many pages of the wallet's sessions one listing reads, newest first: the list keeps
/// every session the wallet ever opened, and a session runs a day at most, so the newest
/// thousand cover far more than the sessions that can still be open at the janitor's pace.
const WALLET_PAGES: u32 = 10;

/// A client for one proxy-router. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct ProxyRouterClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub http: transport::ClientPerThread,
    /// `scheme://host[:port][/prefix]`, without credentials or trailing slash.
    pub base: String,
    /// The chat endpoint, parsed once: it is on every request's path.
    pub chat_url: Url,
    pub embeddings_url: Url,
    pub transcriptions_url: Url,
    pub speech_url: Url,
    /// `Basic …`, marked sensitive so it never shows in debug output.
    pub auth: Option<HeaderValue>,
    pub config: ProxyRouterConfig,
    /// Session ids this process already returned from an open.
    handed_out: Mutex<HandedOut>,
}

#[derive(Default)]
struct HandedOut {
    ids: HashSet<SessionId>,
    order: VecDeque<SessionId>,
}

impl ProxyRouterClient {
    pub fn new(config: ProxyRouterConfig) -> anyhow::Result<Self> {
        let base = normalise_base(&config.base_url)?;
        let user = config.user.clone().or(base.user);
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .or(base.password);
        let auth = match (user, password) {
            (None, None) => None,
            (user, password) => Some(basic_auth(
                user.as_deref().unwrap_or(""),
                password.as_deref().unwrap_or(""),
            )?),
        };
        let http = transport::ClientPerThread::new(config.connect_timeout)?;
        let chat_url = Url::parse(&format!(
            "{}{}",
            base.base,
            Endpoint::ChatCompletions.path()
        ))?;
        let embeddings_url = Url::parse(&format!("{}{}", base.base, Endpoint::Embeddings.path()))?;
        let transcriptions_url =
            Url::parse(&format!("{}{}", base.base, Endpoint::Transcriptions.path()))?;
        let speech_url = Url::parse(&format!("{}{}", base.base, Endpoint::Speech.path()))?;
        let mut config = config;
        // Keep no copy of the credentials beyond the header value.
        config.base_url = base.base.clone();
        config.password = None;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: base.base,
                chat_url,
                embeddings_url,
                transcriptions_url,
                speech_url,
                auth,
                config,
                handed_out: Mutex::new(HandedOut::default()),
            }),
        })
    }

    pub(crate) fn url(&self, path_and_query: &str) -> Result<Url, Failure> {
        Url::parse(&format!("{}{}", self.inner.base, path_and_query)).map_err(|_| Failure {
            error: MarketplaceError::Unreachable("invalid request URL".to_owned()),
            not_sent: true,
            ambiguous: false,
        })
    }

    /// A request with Basic auth (when configured) and the current trace's `traceparent`
    /// (when traces are on).
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = with_trace_context(self.inner.http.get().request(method, url));
        match &self.inner.auth {
            Some(auth) => rb.header(AUTHORIZATION, auth.clone()),
            None => rb,
        }
    }

    pub(crate) fn admin_limits(&self) -> Limits {
        let c = &self.inner.config;
        Limits {
            first_byte: c.first_byte_timeout,
            idle: c.idle_timeout,
            total: c.request_timeout,
            max_body: c.max_body_bytes,
        }
    }

    /// An authenticated, retried GET expecting JSON.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Answer, Failure> {
        let url = self.url(path_and_query)?;
        transport::read_with_retries(
            || {
                self.request(Method::GET, url.clone())
                    .header(ACCEPT, "application/json")
            },
            self.admin_limits(),
            true,
        )
        .await
    }

    /// An authenticated POST, sent exactly once.
    pub(crate) async fn post(
        &self,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Answer, Failure> {
        self.post_within(path_and_query, json_body, self.admin_limits())
            .await
    }

    /// [`Self::post`] with its own time limits.
    pub(crate) async fn post_within(
        &self,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        limits: Limits,
    ) -> Result<Answer, Failure> {
        let url = self.url(path_and_query)?;
        let mut rb = self
            .request(Method::POST, url)
            .header(ACCEPT, "application/json");
        if let Some(body) = json_body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let answer = transport::exchange(rb, limits).await?;
        transport::require_json(&answer)?;
        Ok(answer)
    }

    /// Records `id` as handed out; false if it already was.
    pub(crate) fn claim(&self, id: &SessionId) -> bool {
        let mut h = self
            .inner
            .handed_out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !h.ids.insert(id.clone()) {
            return false;
        }
        h.order.push_back(id.clone());
        if h.order.len() > REMEMBERED_SESSIONS
            && let Some(old) = h.order.pop_front()
        {
            h.ids.remove(&old);
        }
        true
    }

    pub(crate) async fn wallet(&self) -> Result<(EthAddress, Answer), Failure> {
        let answer = self.get("/wallet").await?;
        let address = decode(&answer, wire::wallet)?;
        Ok((address, answer))
    }

    /// The newest sessions of `user` (the node's wallet), up to 20.
    pub(crate) async fn user_sessions(
        &self,
        user: &EthAddress,
    ) -> Result<Vec<UpstreamSession>, Failure> {
        let answer = self
            .get(&format!(
                "/blockchain/sessions/user?user={}&offset=0&limit=20&order=desc",
                user.as_str()
            ))
            .await?;
        decode(&answer, wire::sessions)
    }

    /// Every session of `user`, newest first, read [`WALLET_PAGE`] at a time up to
    /// [`WALLET_PAGES`] pages (`limit` is a `uint8` upstream, proxy-router-behaviour.md §1 row 9).
    async fn all_user_sessions(&self, user: &EthAddress) -> Result<Vec<UpstreamSession>, Failure> {
        let mut all = Vec::new();
        for page in 0..WALLET_PAGES {
            let answer = self
                .get(&format!(
                    "/blockchain/sessions/user?user={}&offset={}&limit={WALLET_PAGE}&order=desc",
                    user.as_str(),
                    page * WALLET_PAGE
                ))
                .await?;
            let sessions = decode(&answer, wire::sessions)?;
            let last = sessions.len() < WALLET_PAGE as usize;
            all.extend(sessions);
            if last {
                break;
            }
        }
        Ok(all)
    }
}

impl std::fmt::Debug for ProxyRouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRouterClient")
            .field("base", &self.inner.base)
            .field("auth", &self.inner.auth.is_some())
            .finish()
    }
}

/// Adds the W3C `traceparent` of the current span, so the proxy-router's work joins the
/// caller's trace. Without traces the propagator is a no-op and nothing is added.
fn with_trace_context(rb: RequestBuilder) -> RequestBuilder {
    use opentelemetry::propagation::Injector;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers(Vec<(String, String)>);
    impl Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    let context = tracing::Span::current().context();
    // Without traces no span has an OpenTelemetry context: the propagator is not even asked.
    if !context.span().span_context().is_valid() {
        return rb;
    }
    let mut headers = Headers(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    headers
        .0
        .into_iter()
        .fold(rb, |rb, (name, value)| rb.header(name, value))
}

fn basic_auth(user: &str, password: &str) -> anyhow::Result<HeaderValue> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| anyhow::anyhow!("the proxy-router credentials cannot form a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Parses a 2xx body; an unreadable success is ambiguous (it may hide a done deed).
pub(crate) fn decode<T>(
    answer: &Answer,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Failure> {
    parse(&answer.body).map_err(|why| Failure::ambiguous(MarketplaceError::InvalidResponse(why)))
}

#[async_trait]
impl Marketplace for ProxyRouterClient {
    async fn health(&self) -> Result<(), MarketplaceError> {
        // The only call without credentials: the node does not ask for them here.
        let url = self.url("/healthcheck").map_err(|f| f.error)?;
        transport::read_with_retries(
            || self.inner.http.get().get(url.clone()),
            self.admin_limits(),
            false,
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    async fn models(&self) -> Result<Vec<MarketModel>, MarketplaceError> {
        let answer = self.get("/blockchain/models").await.map_err(|f| f.error)?;
        decode(&answer, wire::models).map_err(|f| f.error)
    }

    async fn rated_bids(&self, model: &ModelId) -> Result<Vec<RatedBid>, MarketplaceError> {
        let answer = self
            .get(&format!("/blockchain/models/{}/bids/rated", model.as_str()))
            .await
            .map_err(|f| f.error)?;
        decode(&answer, wire::rated_bids).map_err(|f| f.error)
    }

    async fn bid(&self, id: &BidId) -> Result<Option<Bid>, MarketplaceError> {
        let answer = self
            .get(&format!("/blockchain/bids/{}", id.as_str()))
            .await
            .map_err(|f| f.error)?;
        decode(&answer, wire::bid).map_err(|f| f.error)
    }

    async fn approve(
        &self,
        spender: &EthAddress,
        amount: u128,
    ) -> Result<TxHash, MarketplaceError> {
        // Never retried: a second approve is a second transaction.
        let answer = self
            .post(
                &format!(
                    "/blockchain/approve?spender={}&amount={amount}",
                    spender.as_str()
                ),
                None,
            )
            .await
            .map_err(|f| f.error)?;
        decode(&answer, wire::tx).map_err(|f| f.error)
    }

    async fn open_model_session(
        &self,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        self.open_session(crate::open_recovery::OpenTarget::Model(model), terms)
            .await
    }

    async fn open_bid_session(
        &self,
        bid: &BidId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        self.open_session(crate::open_recovery::OpenTarget::Bid(bid), terms)
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<UpstreamSession, MarketplaceError> {
        let answer = self
            .get(&format!("/blockchain/sessions/{}", id.as_str()))
            .await
            .map_err(|f| f.error)?;
        decode(&answer, wire::session).map_err(|f| f.error)
    }

    async fn close_session(&self, id: &SessionId) -> Result<TxHash, MarketplaceError> {
        // Never retried here: the caller's background task retries later, with the chain's
        // view of the session in hand.
        let answer = self
            .post(&format!("/blockchain/sessions/{}/close", id.as_str()), None)
            .await
            .map_err(|f| f.error)?;
        decode(&answer, wire::tx).map_err(|f| f.error)
    }

    async fn wallet_sessions(&self) -> Result<Vec<UpstreamSession>, MarketplaceError> {
        let (wallet, _) = self.wallet().await.map_err(|f| f.error)?;
        let mut sessions = self.all_user_sessions(&wallet).await.map_err(|f| f.error)?;
        sessions.retain(|s| !s.is_closed());
        sessions.sort_by_key(|s| std::cmp::Reverse(s.opened_at));
        Ok(sessions)
    }

    async fn chat(&self, call: ChatCall) -> Result<ChatReply, MarketplaceError> {
        self.chat_call(call).await
    }

    async fn balance(&self) -> Result<WalletBalance, MarketplaceError> {
        let answer = self.get("/blockchain/balance").await.map_err(|f| f.error)?;
        decode(&answer, wire::balance).map_err(|f| f.error)
    }
}
