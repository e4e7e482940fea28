use std::sync::Arc;

use morpheus_domain::ports::{Counters, HealthProbe, UsageSink};

use crate::chat_admission::ChatAdmission;
use crate::client_address::ClientAddressRules;
use crate::connections::ConnectionLimits;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, MetricsAccess};
use crate::rated_bids::RatedBidsCache;
use crate::readiness::ReadinessChecks;
use crate::secret_token::SecretToken;
use morpheus_domain::services::{
    AccountService, ApiKeyService, AutomationService, BillingService, ChatHistoryService,
    ChatLimits, ChatService, DelegationService, RateLimiter, SessionService, WalletService,
};

/// What the service says about itself on `/` and `/health`.
#[derive(Debug, Clone)]
pub struct ServiceMeta {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// What a transcription may upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: u64,
    pub deadline: std::time::Duration,
}

/// Everything handlers need, shared by all workers (`web::Data<AppState>`).
#[derive(Clone)]
pub struct AppState {
    pub accounts: AccountService,
    pub api_keys: ApiKeyService,
    pub wallets: WalletService,
    pub delegations: DelegationService,
    pub automation: AutomationService,
    pub sessions: SessionService,
    pub chat: ChatService,
    /// Chats a client stores per user (`/api/v1/chat-history`).
    pub chat_history: ChatHistoryService,
    /// Credits: holds, charges, the ledger.
    pub billing: BillingService,
    /// Rate limits and budgets; the chat service admits through it, the key routes read it.
    pub limiter: RateLimiter,
    /// Streams a client left, read on to their final usage.
    pub stream_drains: crate::stream_drains::StreamDrains,
    /// Where chat requests leave their usage records (batched, off the request path).
    pub usage: Arc<dyn UsageSink>,
    pub chat_limits: ChatLimits,
    /// Load shedding: when a worker is too late to take more chats.
    pub chat_admission: ChatAdmission,
    /// A `: keep-alive` comment goes out on a stream quiet for this long.
    pub sse_keep_alive: std::time::Duration,
    /// A stream broken mid-answer is continued on another upstream
    /// (`MORPHEUS_STREAM_CONTINUATION`).
    pub stream_continuation: bool,
    /// A transcription's upload: its largest size and how long it may take to arrive.
    pub uploads: UploadLimits,
    /// `false` when no proxy-router is configured: marketplace routes answer 503 saying so.
    pub marketplace_configured: bool,
    pub health: Arc<dyn HealthProbe>,
    /// `/ready`'s dependency checks, shared between probes.
    pub readiness: ReadinessChecks,
    pub meta: ServiceMeta,
    pub metrics: Metrics,
    /// Who may read `GET /metrics` on the main listener.
    pub metrics_access: MetricsAccess,
    /// Draining and the end of streams at shutdown.
    pub lifecycle: Lifecycle,
    /// Who a request comes from, for every per-client limit.
    pub client_addresses: ClientAddressRules,
    /// Caps on open connections, overall and per client address.
    pub connection_limits: Arc<ConnectionLimits>,
    /// `GET /models/ratedbids`: shared answers and a per-client limit.
    pub rated_bids: RatedBidsCache,
    /// The operator's credential for actions that spend from the node's wallet outside a
    /// session (`POST /session/approve`); `None`: those actions are off.
    pub admin_token: Option<SecretToken>,
    /// Rate limits and budget windows: shared through Redis when it is configured (global
    /// limits, behind a circuit breaker and the failure policy), else this process's memory.
    pub counters: Arc<dyn Counters>,
}
