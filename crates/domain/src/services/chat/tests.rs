//! The chat service on fake ports: which upstream failures renew the session, which are
//! retried on it, and which end the request.

use bytes::Bytes;

use super::*;
use crate::services::UsageMeter;
use crate::testing::{FakeMarket, SessionWorld};

struct NoUsage;

impl UsageSink for NoUsage {
    fn record(&self, _: UsageRecord) {}
}

fn request() -> ChatRequest {
    ChatRequest {
        endpoint: Endpoint::ChatCompletions,
        model: Some(SessionWorld::MODEL_NAME.to_owned()),
        session_id: None,
        stream: false,
        body: Bytes::from_static(b"{\"messages\":[]}"),
        upload: None,
        request_id: None,
        estimate: TokenEstimate::default(),
        policy: KeyPolicy::default(),
        limit_multiplier: LimitMultiplier::ONE,
    }
}

async fn complete(w: &SessionWorld) -> Result<ChatAnswer, ChatError> {
    let chat = ChatService::new(w.sessions.clone());
    let mut meter = UsageMeter::start(std::sync::Arc::new(NoUsage), w.owner, false);
    chat.complete(w.owner, request(), &mut meter).await
}

fn chats(w: &SessionWorld) -> usize {
    w.market.chats.lock().unwrap().len()
}

#[tokio::test]
async fn a_chain_read_blip_is_retried_on_the_same_session() {
    let w = SessionWorld::new(true).await;
    let first = complete(&w).await.unwrap().session.unwrap().id;
    FakeMarket::fail_next(
        &w.market.chat_failures,
        MarketplaceError::SessionGone(SessionGone::NotFound),
    );
    let again = complete(&w).await.unwrap();
    assert_eq!(again.session.unwrap().id, first);
    assert_eq!(w.market.opens(), 1, "no new paid session");
}

#[tokio::test]
async fn a_session_gone_on_chain_is_renewed_once() {
    let w = SessionWorld::new(true).await;
    let first = complete(&w).await.unwrap().session.unwrap().id;
    w.market.close_on_chain(&first);
    let renewed = complete(&w).await.unwrap();
    assert_ne!(renewed.session.unwrap().id, first);
    assert_eq!(w.market.opens(), 2);
}

#[tokio::test]
async fn when_the_chain_cannot_be_read_nothing_is_retired_or_opened() {
    let w = SessionWorld::new(true).await;
    let first = complete(&w).await.unwrap().session.unwrap().id;
    FakeMarket::fail_next(
        &w.market.chat_failures,
        MarketplaceError::SessionGone(SessionGone::NotFound),
    );
    FakeMarket::fail_next(
        &w.market.read_failures,
        MarketplaceError::Timeout(TimeoutPhase::Total),
    );
    let got = complete(&w).await;
    assert!(
        matches!(
            got,
            Err(ChatError::Upstream(MarketplaceError::SessionGone(
                SessionGone::NotFound
            )))
        ),
        "{got:?}"
    );
    assert_eq!(w.market.opens(), 1);
    assert_eq!(w.store.record(&first).unwrap().state, SessionState::Active);
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_then_the_error_stands() {
    let w = SessionWorld::new(true).await;
    complete(&w).await.unwrap();
    for _ in 0..2 {
        FakeMarket::fail_next(
            &w.market.chat_failures,
            MarketplaceError::SessionGone(SessionGone::Expired),
        );
    }
    let got = complete(&w).await;
    assert!(matches!(got, Err(ChatError::Upstream(_))), "{got:?}");
    assert_eq!(w.market.opens(), 2, "renewed once, not twice");
}

#[tokio::test]
async fn a_brief_unavailability_is_retried_once_and_a_refusal_never() {
    let w = SessionWorld::new(true).await;
    complete(&w).await.unwrap();
    FakeMarket::fail_next(
        &w.market.chat_failures,
        MarketplaceError::Rejected {
            status: 503,
            message: "unavailable".to_owned(),
            retry_after: None,
        },
    );
    let before = chats(&w);
    assert!(complete(&w).await.is_ok());
    assert_eq!(chats(&w), before + 2, "sent again once");
    FakeMarket::fail_next(
        &w.market.chat_failures,
        MarketplaceError::Provider {
            fault: ProviderFault::InvalidRequest,
            message: "too long".to_owned(),
            retry_after: None,
        },
    );
    let before = chats(&w);
    assert!(complete(&w).await.is_err());
    assert_eq!(chats(&w), before + 1, "not sent again");
}

#[tokio::test]
async fn without_automation_the_keys_ended_session_says_it_ended() {
    let w = SessionWorld::new(true).await;
    let terms = SessionWorld::terms();
    let first = w
        .sessions
        .open_for_model(
            w.owner,
            SessionWorld::MODEL_NAME,
            terms,
            &KeyPolicy::default(),
        )
        .await
        .unwrap()
        .session
        .id;
    assert_eq!(complete(&w).await.unwrap().session.unwrap().id, first);
    w.automation
        .update(
            w.owner.user,
            AutomationUpdate {
                is_enabled: Some(false),
                session_duration: None,
            },
        )
        .await
        .unwrap();
    w.market.close_on_chain(&first);
    let got = complete(&w).await;
    assert!(
        matches!(got, Err(ChatError::Session(ChatSessionError::Ended))),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_dead_session_is_left_for_one_of_another_provider_before_the_first_byte() {
    let w = SessionWorld::new(true).await;
    let first = complete(&w).await.unwrap().session.unwrap();
    FakeMarket::fail_next(
        &w.market.chat_failures,
        MarketplaceError::SessionGone(SessionGone::Unusable),
    );
    let answer = complete(&w).await.unwrap();
    let session = answer.session.unwrap();
    assert_ne!(session.id, first.id);
    assert_ne!(session.bid_id, first.bid_id, "another provider");
    assert_eq!(w.market.opens(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        w.store.record(&first.id).unwrap().state,
        SessionState::Retired
    );
}

#[tokio::test]
async fn a_model_off_the_keys_allow_list_is_refused_before_any_session() {
    let w = SessionWorld::new(true).await;
    let chat = ChatService::new(w.sessions.clone());
    let ask = |allowed: &[&str]| {
        let mut request = request();
        request.policy.allowed_models =
            Some(AllowedModels::parse(allowed.iter().map(|s| (*s).to_owned()).collect()).unwrap());
        request
    };
    let mut meter = UsageMeter::start(std::sync::Arc::new(NoUsage), w.owner, false);
    let refused = chat.complete(w.owner, ask(&["mistral"]), &mut meter).await;
    assert!(
        matches!(&refused, Err(ChatError::ModelNotAllowed(m)) if m == SessionWorld::MODEL_NAME),
        "{refused:?}"
    );
    assert_eq!(w.market.opens(), 0, "no session opened");
    assert_eq!(chats(&w), 0);

    // By name, any case, or by id.
    for allowed in ["LLAMA", w.model.as_str()] {
        let mut meter = UsageMeter::start(std::sync::Arc::new(NoUsage), w.owner, false);
        assert!(
            chat.complete(w.owner, ask(&[allowed]), &mut meter)
                .await
                .is_ok()
        );
    }

    // A session of the key named in the request: refused as well, before its turn is taken.
    let session = w
        .sessions
        .open_for_model(
            w.owner,
            SessionWorld::MODEL_NAME,
            SessionWorld::terms(),
            &KeyPolicy::default(),
        )
        .await
        .unwrap()
        .session
        .id;
    let mut pinned = ask(&["mistral"]);
    pinned.session_id = Some(session);
    let mut meter = UsageMeter::start(std::sync::Arc::new(NoUsage), w.owner, false);
    let sent = chats(&w);
    assert!(matches!(
        chat.complete(w.owner, pinned, &mut meter).await,
        Err(ChatError::ModelNotAllowed(_))
    ));
    assert_eq!(chats(&w), sent);
}

/// A provider that fails with the queued errors, then answers.
#[derive(Default)]
struct ScriptedProvider {
    failures: std::sync::Mutex<std::collections::VecDeque<MarketplaceError>>,
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Provider for ScriptedProvider {
    async fn call(&self, call: ProviderCall) -> Result<ChatReply, MarketplaceError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            call.model, "upstream-name",
            "the provider's own name is sent"
        );
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        Ok(ChatReply::Complete {
            body: Bytes::from_static(b"{\"choices\":[]}"),
            usage: None,
        })
    }
}

/// The world's model served by `provider` (priority 0) before the marketplace (priority 1).
fn with_provider(w: &SessionWorld, provider: Arc<ScriptedProvider>) -> ChatService {
    let upstreams = crate::services::Upstreams::new(
        vec![crate::services::ProviderEntry {
            name: "p".to_owned(),
            client: provider,
            priority: 0,
            weight: 1,
            models: vec![crate::services::ProvidedModel {
                name: SessionWorld::MODEL_NAME.to_owned(),
                upstream_name: "upstream-name".to_owned(),
                aliases: vec![],
                model_type: ModelType::Llm,
            }],
        }],
        1,
        1,
        Duration::from_secs(60),
    );
    ChatService::new(w.sessions.clone()).with_upstreams(Arc::new(upstreams), true)
}

async fn complete_with(w: &SessionWorld, chat: &ChatService) -> Result<ChatAnswer, ChatError> {
    let mut meter = UsageMeter::start(std::sync::Arc::new(NoUsage), w.owner, false);
    chat.complete(w.owner, request(), &mut meter).await
}

#[tokio::test]
async fn a_provider_answers_first_and_an_overloaded_one_hands_over_and_cools() {
    let w = SessionWorld::new(true).await;
    let provider = Arc::new(ScriptedProvider::default());
    let chat = with_provider(&w, provider.clone());
    let answer = complete_with(&w, &chat).await.unwrap();
    assert!(answer.session.is_none(), "the provider served");
    assert_eq!(chats(&w), 0);

    provider
        .failures
        .lock()
        .unwrap()
        .push_back(MarketplaceError::Rejected {
            status: 503,
            message: "overloaded".to_owned(),
            retry_after: None,
        });
    let answer = complete_with(&w, &chat).await.unwrap();
    assert!(answer.session.is_some(), "the marketplace took over");
    assert_eq!(chats(&w), 1);
    // Cooling down: the next request goes to the marketplace without asking it.
    let calls = provider.calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(complete_with(&w, &chat).await.unwrap().session.is_some());
    assert_eq!(
        provider.calls.load(std::sync::atomic::Ordering::Relaxed),
        calls
    );
}

#[tokio::test]
async fn a_request_the_provider_calls_invalid_goes_nowhere_else() {
    let w = SessionWorld::new(true).await;
    let provider = Arc::new(ScriptedProvider::default());
    let chat = with_provider(&w, provider.clone());
    provider
        .failures
        .lock()
        .unwrap()
        .push_back(MarketplaceError::Rejected {
            status: 400,
            message: "context too long".to_owned(),
            retry_after: None,
        });
    let got = complete_with(&w, &chat).await;
    assert!(
        matches!(
            got,
            Err(ChatError::Upstream(MarketplaceError::Rejected {
                status: 400,
                ..
            }))
        ),
        "{got:?}"
    );
    assert_eq!(chats(&w), 0, "the marketplace was not asked");
    assert_eq!(w.market.opens(), 0, "nor a session opened");
}
