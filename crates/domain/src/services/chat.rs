//! Chat completions and embeddings: pick the model, admit the request, then send it to the
//! model's upstreams in their order — a marketplace session (renewed once when the upstream
//! says it is gone, retried once when the provider side is briefly unavailable) or one of the
//! operator's providers — handing over to the next upstream on a failure, always before
//! anything has reached the client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{
    ChatSessionError, ResolveModelError, ResolvedModel, SessionLease, SessionOwner, SessionService,
};
use crate::model::*;
use crate::ports::*;

/// A chat request as the HTTP layer parsed it.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Chat (the default) or embeddings: the same admission, sessions and retries.
    pub endpoint: Endpoint,
    pub model: Option<String>,
    pub session_id: Option<SessionId>,
    pub stream: bool,
    /// The client's JSON body with the gateway-only fields removed (empty for a
    /// transcription).
    pub body: Bytes,
    /// A transcription's form, sent as multipart.
    pub upload: Option<Upload>,
    pub request_id: Option<String>,
    /// What the request may use, for its credit hold and its rate limits.
    pub estimate: TokenEstimate,
    /// The calling key's policy: its allow-list, rates and budgets.
    pub policy: KeyPolicy,
    /// The key owner's share of the operator's rate limits.
    pub limit_multiplier: LimitMultiplier,
}

impl ChatRequest {
    /// Whether the request can still be sent (again): an upload piped live from the client
    /// goes upstream once, so a failure after it left is the answer.
    fn can_send(&self) -> bool {
        self.upload.as_ref().is_none_or(|u| u.source.can_send())
    }
}

#[derive(Debug)]
pub struct ChatAnswer {
    pub model: ResolvedModel,
    /// `None` when a provider answered.
    pub session: Option<SessionRecord>,
    pub reply: ChatReply,
    /// Who answered: `marketplace` or the provider's name.
    pub upstream: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Model(#[from] ResolveModelError),
    #[error(transparent)]
    Session(#[from] ChatSessionError),
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
    #[error(transparent)]
    Credit(#[from] super::HoldError),
    /// Boxed: the refusal carries the limits' state, and results stay small.
    #[error(transparent)]
    Limited(Box<super::LimitRefusal>),
    /// The model is not on the key's allow-list.
    #[error("This API key may not use the model '{0}'")]
    ModelNotAllowed(String),
}

impl From<super::LimitRefusal> for ChatError {
    fn from(refusal: super::LimitRefusal) -> Self {
        Self::Limited(Box::new(refusal))
    }
}

/// The caps a request must respect (checked before anything is spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    pub max_tokens: u32,
    pub max_choices: u32,
    pub max_messages: usize,
    pub max_tools: usize,
}

/// The numbers of a request that the caps apply to.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatShape {
    pub max_tokens: Option<u64>,
    pub choices: Option<u64>,
    pub messages: usize,
    pub tools: usize,
}

/// A request over a cap: `param` names the field, `code` is stable for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitExceeded {
    pub param: String,
    pub code: &'static str,
    pub message: String,
}

impl ChatLimits {
    pub fn check(&self, shape: &ChatShape) -> Result<(), LimitExceeded> {
        let over = |param: &str, code, message: String| {
            Err(LimitExceeded {
                param: param.to_owned(),
                code,
                message,
            })
        };
        if shape
            .max_tokens
            .is_some_and(|n| n > u64::from(self.max_tokens))
        {
            return over(
                "max_tokens",
                "max_tokens_exceeded",
                format!("max_tokens may be at most {}", self.max_tokens),
            );
        }
        if shape
            .choices
            .is_some_and(|n| n > u64::from(self.max_choices))
        {
            return over(
                "n",
                "too_many_choices",
                format!("n may be at most {}", self.max_choices),
            );
        }
        if shape.messages > self.max_messages {
            return over(
                "messages",
                "too_many_messages",
                format!("a request may carry at most {} messages", self.max_messages),
            );
        }
        if shape.tools > self.max_tools {
            return over(
                "tools",
                "too_many_tools",
                format!("a request may declare at most {} tools", self.max_tools),
            );
        }
        Ok(())
    }
}

/// A member of a chat request the gateway forwards without modelling it, as the HTTP layer
/// read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmodelledValue {
    Null,
    /// A whole number that fits in 64 bits.
    Integer(i64),
    /// Anything else: a fraction, a huge number, text, a list or an object.
    Other,
}

/// What bounds a numeric member some providers honour and the gateway does not model.
#[derive(Debug, Clone, Copy)]
enum KnobBound {
    /// A number of tokens: 0 up to the `max_tokens` cap.
    Tokens,
    /// A number of sequences generated per answer: 1 up to the `n` cap.
    Sequences,
    Between(i64, i64),
}

/// Numeric knobs of inference servers (vLLM, TGI, Ollama, llama.cpp, …) that OpenAI's API does
/// not have, or the gateway does not model, and that cost a provider as much as the caps the
/// gateway enforces: bounded like them, so a request cannot ask for more through another name.
const KNOBS: &[(&str, KnobBound)] = &[
    ("max_new_tokens", KnobBound::Tokens),
    ("max_length", KnobBound::Tokens),
    ("max_output_tokens", KnobBound::Tokens),
    ("num_predict", KnobBound::Tokens),
    ("n_predict", KnobBound::Tokens),
    ("min_tokens", KnobBound::Tokens),
    ("min_new_tokens", KnobBound::Tokens),
    ("best_of", KnobBound::Sequences),
    ("num_return_sequences", KnobBound::Sequences),
    ("num_beams", KnobBound::Sequences),
    // OpenAI's own range.
    ("top_logprobs", KnobBound::Between(0, 20)),
    // -1 and 0 mean "off" on vLLM and llama.cpp; no vocabulary is this large.
    ("top_k", KnobBound::Between(-1, 1_000_000)),
];

/// Members the gateway does not model may nest at most this deep (an object or list in the
/// member's value counts one, and so on), so a request cannot hand providers a deeply
/// nested document the gateway never looked at.
pub const MAX_UNMODELLED_DEPTH: usize = 8;

impl ChatLimits {
    /// Checks a top-level member of a chat request that the gateway forwards without
    /// modelling it: a known numeric knob must be a whole number within its bound, and any
    /// such member may nest at most [`MAX_UNMODELLED_DEPTH`] deep.
    pub fn check_unmodelled(
        &self,
        name: &str,
        value: UnmodelledValue,
        depth: usize,
    ) -> Result<(), LimitExceeded> {
        let refuse = |code, message: String| {
            Err(LimitExceeded {
                param: name.to_owned(),
                code,
                message,
            })
        };
        if depth > MAX_UNMODELLED_DEPTH {
            return refuse(
                "nesting_too_deep",
                format!(
                    "{name} nests {depth} levels deep; members the gateway forwards as they are \
                     may nest at most {MAX_UNMODELLED_DEPTH}"
                ),
            );
        }
        let Some((_, bound)) = KNOBS.iter().find(|(knob, _)| *knob == name) else {
            return Ok(());
        };
        let (low, high, code) = match *bound {
            KnobBound::Tokens => (0, i64::from(self.max_tokens), "max_tokens_exceeded"),
            KnobBound::Sequences => (1, i64::from(self.max_choices), "too_many_choices"),
            KnobBound::Between(low, high) => (low, high, "invalid_value"),
        };
        match value {
            UnmodelledValue::Null => Ok(()),
            UnmodelledValue::Integer(n) if (low..=high).contains(&n) => Ok(()),
            UnmodelledValue::Integer(n) if n > high => {
                refuse(code, format!("{name} may be at most {high}"))
            }
            _ => refuse(
                "invalid_value",
                format!("{name} must be a whole number from {low} to {high}"),
            ),
        }
    }
}

/// How long to wait before the one retry after a transient upstream failure.
const RETRY_DELAY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct ChatService {
    sessions: SessionService,
    billing: Option<super::BillingService>,
    limiter: Option<super::RateLimiter>,
    upstreams: Arc<super::Upstreams>,
    /// Whether a proxy-router is configured: without one only providers serve.
    marketplace: bool,
}

impl ChatService {
    pub fn new(sessions: SessionService) -> Self {
        Self {
            sessions,
            billing: None,
            limiter: None,
            upstreams: Arc::new(super::Upstreams::marketplace_only()),
            marketplace: true,
        }
    }

    /// Every request is admitted by the rate limits and the key's budgets first (they are
    /// counted in the prices of the billing service, so they need it too).
    #[must_use]
    pub fn with_limits(mut self, limiter: super::RateLimiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Every request holds credit before it is sent (when the service's billing is on).
    #[must_use]
    pub fn with_billing(mut self, billing: super::BillingService) -> Self {
        self.billing = Some(billing);
        self
    }

    /// The operator's providers beside the marketplace (`marketplace`: whether a
    /// proxy-router is configured at all).
    #[must_use]
    pub fn with_upstreams(mut self, upstreams: Arc<super::Upstreams>, marketplace: bool) -> Self {
        self.upstreams = upstreams;
        self.marketplace = marketplace;
        self
    }

    /// Whether the operator's providers file declares any provider now (it may be read again).
    pub fn has_providers(&self) -> bool {
        self.upstreams.has_providers()
    }

    /// Resolves the model, admits the request, then asks its upstreams in their order until
    /// one answers: the marketplace on a session (renewed once when the upstream says it is
    /// gone, retried once when briefly unavailable), or a provider; an upstream that fails
    /// before any byte reached the client hands over to the next. The meter learns the model
    /// and session as soon as they are known, so a failure is still attributed. A model
    /// outside the key's allow-list is refused before any session is claimed, opened or
    /// waited for.
    pub async fn complete(
        &self,
        owner: SessionOwner,
        request: ChatRequest,
        meter: &mut super::UsageMeter,
    ) -> Result<ChatAnswer, ChatError> {
        if let Some(id) = &request.session_id {
            let session = self.sessions.pinned_session(owner, id).await?;
            let model = self.sessions.catalogue().named(&session.model_id);
            of_route_type(&request, &model)?;
            allowed(&request, &model)?;
            meter.set_model(model.id.clone());
            self.admit(owner, &model, &request, meter).await?;
            let lease = self.sessions.take_turn(session).await?;
            meter.set_upstream(super::Upstream::Marketplace.label());
            return self.on_session(owner, model, lease, &request, meter).await;
        }
        let model = self
            .sessions
            .catalogue()
            .resolve_for(request.model.as_deref(), request.endpoint.model_type())?;
        // Known before the session: a failure to get one is still attributed.
        meter.set_model(model.id.clone());
        allowed(&request, &model)?;
        // Before a session is claimed or opened: a refused request costs nothing.
        self.admit(owner, &model, &request, meter).await?;
        // A provider-only model has an id derived from its name, never one on chain.
        let on_marketplace = self.marketplace
            && !(self.upstreams.has_providers()
                && model.id == super::provided_model_id(&model.name));
        let plan = self.upstreams.plan(&model, on_marketplace);
        self.run_plan(owner, &model, plan, &request, meter).await
    }

    /// Mid-stream continuation: `request` carries the conversation with the text delivered so
    /// far as a final assistant message (prefill); it goes to the model's other upstreams
    /// (not `broken`, the one whose stream broke), already admitted and held for. Answers once
    /// the continuation's first event has come.
    pub async fn continue_elsewhere(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        request: &ChatRequest,
        broken: &str,
        meter: &mut super::UsageMeter,
    ) -> Result<ChatAnswer, ChatError> {
        let on_marketplace = self.marketplace
            && broken != super::Upstream::Marketplace.label()
            && !(self.upstreams.has_providers()
                && model.id == super::provided_model_id(&model.name));
        let mut plan = self.upstreams.plan(model, on_marketplace);
        plan.retain(|u| u.label() != broken);
        let answer = self.run_plan(owner, model, plan, request, meter).await?;
        first_event_arrived(answer).await
    }

    /// Tries `plan` in order; an upstream that fails before answering hands over to the next.
    async fn run_plan(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        plan: Vec<super::Upstream>,
        request: &ChatRequest,
        meter: &mut super::UsageMeter,
    ) -> Result<ChatAnswer, ChatError> {
        let mut failed = None;
        for (i, upstream) in plan.iter().enumerate() {
            let last = i + 1 == plan.len();
            meter.set_upstream(upstream.label());
            let result = match upstream {
                super::Upstream::Marketplace => {
                    let answer = async {
                        let lease = self.sessions.session_for_chat(owner, model).await?;
                        self.on_session(owner, model.clone(), lease, request, meter)
                            .await
                    };
                    match answer.await {
                        // Another upstream may still take over from a stream that fails
                        // before its first event.
                        Ok(answer) if !last => first_event_arrived(answer).await,
                        other => other,
                    }
                }
                super::Upstream::Provider {
                    client,
                    model: upstream_model,
                    ..
                } => {
                    self.on_provider(&**client, upstream_model, model, request)
                        .await
                }
            };
            match result {
                Ok(answer) => {
                    return Ok(ChatAnswer {
                        upstream: upstream.label().to_owned(),
                        ..answer
                    });
                }
                Err(error) => {
                    let over = hands_over(&error);
                    if over {
                        let retry_after = match &error {
                            ChatError::Upstream(e) => retry_after(e),
                            _ => None,
                        };
                        self.upstreams.cool(upstream, retry_after);
                    }
                    if !over || last || !request.can_send() {
                        return Err(error);
                    }
                    tracing::warn!(upstream = upstream.label(), %error, "upstream failed before answering; trying the next");
                    failed = Some(error);
                }
            }
        }
        Err(failed.unwrap_or(ChatError::Upstream(MarketplaceError::NotConfigured)))
    }

    /// A provider's answer: the request's body with the provider's own model name.
    async fn on_provider(
        &self,
        client: &dyn Provider,
        upstream_model: &str,
        model: &ResolvedModel,
        request: &ChatRequest,
    ) -> Result<ChatAnswer, ChatError> {
        let reply = client
            .call(ProviderCall {
                endpoint: request.endpoint,
                model: upstream_model.to_owned(),
                body: request.body.clone(),
                upload: request.upload.clone(),
                stream: request.stream,
                request_id: request.request_id.clone(),
            })
            .await?;
        Ok(ChatAnswer {
            model: model.clone(),
            session: None,
            reply,
            upstream: String::new(),
        })
    }

    /// The request on a marketplace session, renewing the session once when the upstream
    /// says it is gone and retrying once after a transient failure.
    async fn on_session(
        &self,
        owner: SessionOwner,
        model: ResolvedModel,
        mut lease: SessionLease,
        request: &ChatRequest,
        meter: &mut super::UsageMeter,
    ) -> Result<ChatAnswer, ChatError> {
        meter.set_model(model.id.clone());
        meter.set_session(lease.session().id.clone());

        let mut renewed = false;
        let mut retried = false;
        let mut confirmed = false;
        loop {
            let session = lease.session().clone();
            let call = ChatCall {
                endpoint: request.endpoint,
                session: session.id.clone(),
                body: request.body.clone(),
                upload: request.upload.clone(),
                stream: request.stream,
                request_id: request.request_id.clone(),
            };
            match self.sessions.market().chat(call).await {
                Ok(reply) => {
                    return Ok(ChatAnswer {
                        model,
                        session: Some(session),
                        reply: hold_until_relayed(reply, lease),
                        upstream: super::Upstream::Marketplace.label().to_owned(),
                    });
                }
                // An upload that cannot be read again ends it here.
                Err(error) if !request.can_send() => return Err(error.into()),
                Err(MarketplaceError::SessionGone(SessionGone::NotFound)) if !confirmed => {
                    // `session not found` is also the node's word for a failed chain read:
                    // ask the chain before paying for another session.
                    confirmed = true;
                    match self.sessions.still_open_on_chain(&session).await {
                        Some(true) => {
                            tracing::info!(session = %session.id, "the chain still has the session open; retrying on it once");
                            continue;
                        }
                        Some(false) => {
                            renewed = true;
                            lease = self.renew(owner, lease).await?;
                            meter.set_session(lease.session().id.clone());
                        }
                        None => {
                            return Err(MarketplaceError::SessionGone(SessionGone::NotFound).into());
                        }
                    }
                }
                Err(MarketplaceError::SessionGone(gone)) if !renewed => {
                    tracing::info!(session = %session.id, %gone, "upstream session gone; renewing once");
                    if gone == SessionGone::Unusable {
                        // Its provider cannot serve it: new sessions go to another one.
                        self.sessions.pool().provider_failed(&session);
                    }
                    renewed = true;
                    lease = self.renew(owner, lease).await?;
                    meter.set_session(lease.session().id.clone());
                }
                Err(error) if !retried && is_transient(&error) => {
                    tracing::info!(session = %session.id, %error, "transient upstream failure; retrying once");
                    retried = true;
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Refuses a pinned session whose model does another job than the route.
fn of_route_type(request: &ChatRequest, model: &ResolvedModel) -> Result<(), ChatError> {
    let route = request.endpoint.model_type();
    if model.model_type.serves(route) {
        return Ok(());
    }
    Err(
        ResolveModelError::TypeMismatch(Box::new(super::TypeMismatch {
            requested: request.model.clone().unwrap_or_default(),
            resolved: model.name.clone(),
            resolved_id: model.id.clone(),
            model_type: model.model_type,
            route,
        }))
        .into(),
    )
}

/// Refuses a model outside the request's allow-list, by its resolved name or id.
fn allowed(request: &ChatRequest, model: &ResolvedModel) -> Result<(), ChatError> {
    match &request.policy.allowed_models {
        Some(list) if !list.allows(&model.name, model.id.as_str()) => {
            let shown = if model.name.is_empty() {
                model.id.as_str().to_owned()
            } else {
                model.name.clone()
            };
            Err(ChatError::ModelNotAllowed(shown))
        }
        _ => Ok(()),
    }
}

impl ChatService {
    /// Reserves the request's share of the rate limits and budgets, then holds its credit:
    /// the limits first, so a request over them never reaches the ledger.
    async fn admit(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        request: &ChatRequest,
        meter: &mut super::UsageMeter,
    ) -> Result<(), ChatError> {
        let Some(billing) = &self.billing else {
            return Ok(());
        };
        let quote = billing.quote(model, request.estimate);
        if let Some(limiter) = &self.limiter {
            let caller = super::Caller {
                key: owner.key,
                user: owner.user,
                policy: &request.policy,
                multiplier: request.limit_multiplier,
            };
            meter.attach_admission(limiter.admit(&caller, model, &quote).await?);
        }
        if let Some(hold) = billing
            .hold(owner, model, &quote, request.request_id.clone())
            .await?
        {
            meter.attach_hold(hold);
        }
        Ok(())
    }

    async fn renew(
        &self,
        owner: SessionOwner,
        gone: SessionLease,
    ) -> Result<SessionLease, ChatSessionError> {
        self.sessions
            .renew_for_chat(owner, gone)
            .await
            .map_err(|e| match e {
                // The user did not ask for a new paid session: say why it ended.
                ChatSessionError::AutomationDisabled => ChatSessionError::Ended,
                other => other,
            })
    }
}

/// Whether the next upstream should have the request: this one failed in a way that says
/// nothing about the request itself (unreachable, slow, overloaded, broken, out of sessions),
/// before any byte reached the client. A request the upstream refused as invalid would be
/// refused everywhere.
fn hands_over(error: &ChatError) -> bool {
    match error {
        ChatError::Upstream(e) => match e {
            MarketplaceError::Rejected { status, .. } => *status == 429 || *status >= 500,
            MarketplaceError::Provider { fault, .. } => *fault != ProviderFault::InvalidRequest,
            MarketplaceError::NotConfigured
            | MarketplaceError::Unreachable(_)
            | MarketplaceError::Timeout(_)
            | MarketplaceError::Unauthorized
            | MarketplaceError::SessionGone(_)
            | MarketplaceError::InvalidResponse(_) => true,
        },
        // The marketplace could not give this request a session (pool busy, automation off,
        // a stake cap): a provider still can.
        ChatError::Session(_) => true,
        ChatError::Model(_)
        | ChatError::Credit(_)
        | ChatError::Limited(_)
        | ChatError::ModelNotAllowed(_) => false,
    }
}

fn retry_after(error: &MarketplaceError) -> Option<Duration> {
    match error {
        MarketplaceError::Rejected { retry_after, .. }
        | MarketplaceError::Provider { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// A stream's answer once its first event has come (put back in front), so a stream that
/// fails before it can still go to the next upstream; a whole answer as it is.
async fn first_event_arrived(answer: ChatAnswer) -> Result<ChatAnswer, ChatError> {
    let ChatReply::Stream(mut events) = answer.reply else {
        return Ok(answer);
    };
    let first = std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await;
    let first = match first {
        Some(Ok(event)) => event,
        Some(Err(StreamFault::Idle)) => {
            return Err(MarketplaceError::Timeout(TimeoutPhase::FirstByte).into());
        }
        Some(Err(fault)) => return Err(MarketplaceError::InvalidResponse(fault.to_string()).into()),
        None => {
            return Err(
                MarketplaceError::InvalidResponse(StreamFault::Truncated.to_string()).into(),
            );
        }
    };
    Ok(ChatAnswer {
        reply: ChatReply::Stream(Box::pin(Prepended {
            first: Some(first),
            events,
        })),
        ..answer
    })
}

/// A stream with its first event already read.
struct Prepended {
    first: Option<ChatEvent>,
    events: ChatEventStream,
}

impl futures_core::Stream for Prepended {
    type Item = Result<ChatEvent, StreamFault>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(first)));
        }
        self.events.as_mut().poll_next(cx)
    }
}

/// Keeps the session's lease until the answer was relayed: a whole answer has been read
/// already, a stream holds the lease until it ends or is dropped (the client left).
fn hold_until_relayed(reply: ChatReply, lease: SessionLease) -> ChatReply {
    match reply {
        complete @ ChatReply::Complete { .. } => complete,
        ChatReply::Stream(events) => ChatReply::Stream(Box::pin(Leased {
            events,
            _lease: lease,
        })),
        ChatReply::Media(media) => ChatReply::Media(MediaReply {
            body: Box::pin(Leased {
                events: media.body,
                _lease: lease,
            }),
            ..media
        }),
    }
}

/// A stream (of events, or of bytes) that holds a session's lease while it lives.
struct Leased<S> {
    events: S,
    _lease: SessionLease,
}

impl<S: futures_core::Stream + Unpin> futures_core::Stream for Leased<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.events).poll_next(cx)
    }
}

/// Failures after which the same request can be sent again without harm: nothing reached the
/// client, and the provider side said it was briefly unavailable. A refused connection is not
/// here: the marketplace client already re-sends that once, and a dead proxy-router should be
/// reported at once, not after more attempts.
fn is_transient(error: &MarketplaceError) -> bool {
    match error {
        MarketplaceError::Rejected { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn unmodelled_knobs_are_bounded_like_the_caps_and_unknown_members_are_shallow() {
        let limits = ChatLimits {
            max_tokens: 4096,
            max_choices: 8,
            max_messages: 10,
            max_tools: 4,
        };
        let check = |name, value, depth| {
            limits
                .check_unmodelled(name, value, depth)
                .map_err(|e| (e.param, e.code))
        };
        use UnmodelledValue::*;
        assert!(check("max_new_tokens", Integer(4096), 0).is_ok());
        assert!(check("max_new_tokens", Null, 0).is_ok());
        assert_eq!(
            check("max_new_tokens", Integer(4097), 0),
            Err(("max_new_tokens".into(), "max_tokens_exceeded"))
        );
        assert_eq!(
            check("num_predict", Integer(-1), 0),
            Err(("num_predict".into(), "invalid_value"))
        );
        assert_eq!(
            check("best_of", Integer(9), 0),
            Err(("best_of".into(), "too_many_choices"))
        );
        assert_eq!(
            check("top_k", Other, 0),
            Err(("top_k".into(), "invalid_value"))
        );
        assert!(check("top_k", Integer(-1), 0).is_ok());
        assert!(check("x_vendor", Other, MAX_UNMODELLED_DEPTH).is_ok());
        assert_eq!(
            check("x_vendor", Other, MAX_UNMODELLED_DEPTH + 1),
            Err(("x_vendor".into(), "nesting_too_deep"))
        );
    }

    #[test]
    fn caps_name_the_field_over_its_limit() {
        let limits = ChatLimits {
            max_tokens: 100,
            max_choices: 2,
            max_messages: 10,
            max_tools: 3,
        };
        assert!(limits.check(&ChatShape::default()).is_ok());
        let shape = ChatShape {
            max_tokens: Some(u64::from(limits.max_tokens) + 1),
            ..ChatShape::default()
        };
        assert_eq!(limits.check(&shape).unwrap_err().param, "max_tokens");
        let shape = ChatShape {
            choices: Some(9),
            ..ChatShape::default()
        };
        assert_eq!(limits.check(&shape).unwrap_err().code, "too_many_choices");
        let shape = ChatShape {
            messages: 1001,
            ..ChatShape::default()
        };
        assert_eq!(limits.check(&shape).unwrap_err().param, "messages");
        let shape = ChatShape {
            tools: 129,
            ..ChatShape::default()
        };
        assert_eq!(limits.check(&shape).unwrap_err().param, "tools");
    }
}
