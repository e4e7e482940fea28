//! Wiring: adapters → services → HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use morpheus_api::auth::{
    Argon2Hasher, AuthThrottleSettings, GovernorAuthThrottle, JwtCodec, JwtSettings,
};
use morpheus_api::chat_admission::ChatAdmission;
use morpheus_api::client_address::ClientAddressRules;
use morpheus_api::connections::{self, ConnectionLimits};
use morpheus_api::extract::{BodyDeadline, BodyLimit, ForwardedBodyDeadline, ForwardedBodyLimit};
use morpheus_api::instrumented_marketplace::{InstrumentedMarketplace, InstrumentedProvider};
use morpheus_api::lifecycle::Lifecycle;
use morpheus_api::metrics::{Metrics, MetricsAccess};
use morpheus_api::rated_bids::{RatedBidsCache, RatedBidsSettings};
use morpheus_api::readiness::ReadinessChecks;
use morpheus_api::secret_token::SecretToken;
use morpheus_api::{ApiDoc, AppState, ServiceMeta, request_context};
use morpheus_counters::{
    AllowanceCounters, CounterEvents, FailurePolicy, GuardedCounters, MemoryCounters,
    RedisCounters, RedisOptions,
};
use morpheus_domain::EthAddress;
use morpheus_domain::crypto::{ApiKeyHasher, WalletSealer};
use morpheus_domain::ports::Counters;
use morpheus_domain::services::*;
use morpheus_storage::{
    BatchedUsageWriter, Database, DatabaseUrl, PoolOptions, UsageWriterOptions,
};
use secrecy::ExposeSecret;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::background::{self, Work};
use crate::configuration::{Environment, Settings};
use crate::cors::CorsPolicy;
use crate::marketplace::{self, MarketplaceWiring};
use crate::open_files;
use crate::secrets::Secrets;
use crate::spec;
use crate::supervisor::Supervisor;

/// Where the generated document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    /// The separate metrics listener (`MORPHEUS_METRICS_BIND`), running, and its port.
    metrics_server: Option<(ServerHandle, u16)>,
    stopper: Stopper,
    /// The background tasks; stopped (and final writes flushed) once the server has stopped.
    supervisor: Supervisor,
    /// The demo simulator, when `--simulate-marketplace` started one.
    simulator: Option<morpheus_router_sim::SimHandle>,
}

/// How long start-up waits for the first model list before serving without one (requests
/// that need it answer 503 until the background refresh succeeds).
const FIRST_CATALOGUE_WAIT: Duration = Duration::from_secs(5);
/// A transcription's spool file older than this belongs to no live request: an upload takes
/// at most an hour (`MORPHEUS_UPLOAD_READ_TIMEOUT_MS`), the node waits for audio about half
/// an hour.
const STALE_SPOOL_AGE: Duration = Duration::from_secs(6 * 3600);

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    ///
    /// # Errors
    /// Bad configuration, missing production secrets, an unreachable database, or a busy port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let secrets = Secrets::resolve(&settings)?;
        let database = connect(&settings).await?;
        let task_locks = database.task_locks();
        let marketplace = marketplace::connect(&settings).await?;
        let Built { state, work } = build_state(&settings, &secrets, database, &marketplace)?;
        // Transcription uploads a crashed process left in the temporary directory; old enough
        // that no live request (its upload, then the provider's answer) can still use them.
        tokio::task::spawn_blocking(|| {
            let removed = morpheus_api::remove_stale_spools(STALE_SPOOL_AGE);
            if removed > 0 {
                tracing::info!(removed, "removed stale transcription uploads");
            }
        });
        load_first_catalogue(&marketplace, &state).await;
        let mut supervisor = Supervisor::new(state.metrics.clone(), task_locks);
        background::register(&mut supervisor, &settings, &state, &marketplace, work);
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        tracing::info!(address = %listener.local_addr()?, "morpheus-gateway listening");
        let metrics_server = match &settings.metrics_bind {
            Some(bind) => Some(run_metrics(bind, state.clone())?),
            None => None,
        };
        let grace = Duration::from_secs(settings.shutdown_grace_seconds);
        let lifecycle = state.lifecycle.clone();
        let server = run(listener, state, &settings, grace)?;
        Ok(Self {
            port,
            stopper: Stopper {
                server: server.handle(),
                lifecycle,
                grace,
            },
            server,
            metrics_server,
            supervisor,
            simulator: marketplace.simulator,
        })
    }

    /// The port of the separate metrics listener, when one is configured.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// Starts the same graceful shutdown as SIGTERM (for embedding and tests).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT (both drain gracefully; see [`Stopper::stop`]), then
    /// flushes what is batched. The process's entry point.
    ///
    /// # Errors
    /// When the server fails while running, or the signal handlers cannot be installed.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let signalled = shutdown_signal()?;
        let stopper = self.stopper();
        tokio::spawn(async move {
            let name = signalled.await;
            tracing::info!(
                signal = name,
                grace_seconds = stopper.grace.as_secs(),
                "shutting down: draining in-flight requests"
            );
            stopper.stop().await;
        });
        self.run_until_stopped().await
    }

    /// Serves until the server stops (through a [`Stopper`]), then flushes what is batched.
    ///
    /// # Errors
    /// When the server fails while running.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        if let Some((metrics, _)) = self.metrics_server {
            metrics.stop(true).await;
        }
        // Whatever the server's fate, what is batched is written (shutdown hooks).
        self.supervisor.shutdown().await;
        if let Some(simulator) = self.simulator {
            simulator.shutdown();
        }
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// Stops the server gracefully: `/ready` turns 503 at once, no new connection is accepted,
/// in-flight requests and streams get the grace period to finish, streams still running
/// shortly before its end receive a terminal error event, and whatever remains is closed at
/// its end.
#[derive(Clone)]
pub struct Stopper {
    server: ServerHandle,
    lifecycle: Lifecycle,
    grace: Duration,
}

impl Stopper {
    pub async fn stop(&self) {
        self.lifecycle.begin_draining();
        // Streams get their error event a little before the forced close, so it can be sent.
        let warning = (self.grace / 5).min(Duration::from_secs(1));
        let lifecycle = self.lifecycle.clone();
        let cut_at = self.grace.saturating_sub(warning);
        let cutter = tokio::spawn(async move {
            tokio::time::sleep(cut_at).await;
            lifecycle.end_streams();
        });
        self.server.stop(true).await;
        cutter.abort();
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT. actix's own handlers are off: it
/// treats SIGINT as a forced stop, and we want both to drain.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Waits a little for the first model list, so a gateway that just started can serve; without
/// it, requests that need it answer 503 until the background refresh succeeds.
async fn load_first_catalogue(wiring: &MarketplaceWiring, state: &AppState) {
    let catalogue = state.sessions.catalogue();
    if !wiring.configured {
        if state.chat.has_providers() {
            // No marketplace to refresh from: the providers' models are the whole list, and
            // it is loaded now, once.
            catalogue.replace(Vec::new(), Vec::new(), chrono::Utc::now());
        }
        return;
    }
    let first = marketplace::refresh_catalogue(&*wiring.market, wiring.feed.as_deref(), catalogue);
    match tokio::time::timeout(FIRST_CATALOGUE_WAIT, first).await {
        Ok(Ok(())) => tracing::info!(
            models = catalogue.snapshot().listed.len(),
            "model catalogue loaded"
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "loading the model catalogue failed; retrying in the background")
        }
        Err(_) => {
            tracing::warn!("loading the model catalogue timed out; retrying in the background")
        }
    }
}

/// The `migrate` command.
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    connect(settings).await?;
    tracing::info!("migrations are up to date");
    Ok(())
}

/// The `reseal-wallet-keys` command.
///
/// # Errors
/// When the database fails, or when some stored key could not be opened with the configured
/// master keys (those rows are counted and logged, the others are still resealed).
pub async fn reseal_wallet_keys(settings: &Settings) -> anyhow::Result<ResealReport> {
    let secrets = Secrets::resolve(settings)?;
    let database = Arc::new(connect(settings).await?);
    let wallets = WalletService::new(database, Arc::new(wallet_sealer(&secrets)?));
    let report = wallets.reseal_all().await?;
    tracing::info!(
        examined = report.examined,
        resealed = report.resealed,
        already_current = report.already_current,
        failed = report.failed,
        "resealed wallet keys"
    );
    anyhow::ensure!(
        report.failed == 0,
        "{} wallet keys could not be opened with the configured master keys",
        report.failed
    );
    Ok(report)
}

fn wallet_sealer(secrets: &Secrets) -> anyhow::Result<WalletSealer> {
    WalletSealer::with_previous(
        &secrets.wallet_master_key,
        &secrets.wallet_previous_master_keys,
    )
}

/// Opens the database and applies its migrations.
///
/// # Errors
/// A bad URL, an unreachable database, or a failed migration.
pub async fn connect(settings: &Settings) -> anyhow::Result<Database> {
    let url = DatabaseUrl::parse(&settings.database_url)?;
    tracing::info!(database = %url, "connecting to the database");
    let database = Database::connect(&url, pool_options(settings))?;
    database.migrate().await.context("applying migrations")?;
    Ok(database)
}

/// The database pool the settings ask for.
pub fn pool_options(settings: &Settings) -> PoolOptions {
    PoolOptions {
        max_size: settings.db_pool_size,
        connection_timeout: Duration::from_millis(settings.db_connect_timeout_ms),
        sqlite_synchronous: settings.sqlite_synchronous.into(),
    }
}

/// The counters of rate limits, budget windows and throttles: in Redis behind the circuit
/// breaker and the failure policy when `MORPHEUS_REDIS_URL` is set, else in memory.
///
/// # Errors
/// When the Redis URL cannot be parsed.
pub fn counters(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Arc<dyn Counters>> {
    let Some(url) = &settings.redis_url else {
        return Ok(Arc::new(MemoryCounters::new()));
    };
    let store = RedisCounters::new(
        url,
        RedisOptions {
            prefix: settings.redis_key_prefix.clone(),
            timeout: Duration::from_millis(settings.redis_timeout_ms),
            connect_timeout: Duration::from_millis(settings.redis_connect_timeout_ms),
        },
    )
    .context("MORPHEUS_REDIS_URL")?;
    let policy = if settings.limits_fail_closed {
        FailurePolicy::Closed
    } else {
        FailurePolicy::Open
    };
    Ok(Arc::new(
        GuardedCounters::new(Arc::new(store), policy)
            .with_events(Arc::new(CounterMetrics(metrics.clone()))),
    ))
}

/// The shared counters' failures, fallbacks and breaker, as metrics.
struct CounterMetrics(Metrics);

impl CounterEvents for CounterMetrics {
    fn store_failed(&self) {
        self.0.counter_store_failures.inc();
    }

    fn decided_without_store(&self, allowed: bool) {
        let decision = if allowed { "allowed" } else { "refused" };
        self.0
            .counter_fallbacks
            .get_or_create(&morpheus_api::metrics::FallbackLabels { decision })
            .inc();
    }

    fn breaker_changed(&self, open: bool) {
        self.0.counter_breaker_open.set(i64::from(open));
    }
}

fn workers(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(2, usize::from)
    }
}

/// Builds every service from its adapters.
///
/// # Errors
/// When a secret is unusable or argon2 cannot be initialised.
pub fn build_state(
    settings: &Settings,
    secrets: &Secrets,
    database: Database,
    marketplace: &MarketplaceWiring,
) -> anyhow::Result<Built> {
    let db = Arc::new(database);
    let tokens = Arc::new(JwtCodec::new(JwtSettings {
        secret: secrets.jwt_secret.clone(),
        previous_secrets: secrets.jwt_previous_secrets.clone(),
    })?);
    let hasher = Arc::new(Argon2Hasher::new(
        workers(settings.password_hash_concurrency),
        Duration::from_millis(settings.password_hash_queue_ms),
    )?);
    let metrics = Metrics::new();
    let counters = counters(settings, &metrics)?;
    let throttle = GovernorAuthThrottle::new(AuthThrottleSettings {
        per_account_client_burst: settings.login_attempts_per_account_client,
        per_account_client_refill: Duration::from_secs(
            settings.login_account_client_refill_seconds,
        ),
        per_client_burst: settings.login_attempts_per_client,
        per_client_refill: Duration::from_secs(settings.login_client_refill_seconds),
        account_failure_limit: settings.login_failures_per_account,
        account_failure_refill: Duration::from_secs(settings.login_account_refill_seconds),
        account_max_delay: Duration::from_millis(settings.login_account_max_delay_ms),
        registrations_burst: settings.registrations_per_client,
        registrations_refill: Duration::from_secs(settings.registration_client_refill_seconds),
    });
    // With Redis the hard limits are global; in memory the GCRA limiters are already this
    // process's, and exact.
    let throttle = Arc::new(match settings.redis_url {
        Some(_) => throttle.with_shared_counters(counters.clone()),
        None => throttle,
    });
    let client_addresses = ClientAddressRules::new(
        settings.trusted_proxies.as_deref().unwrap_or_default(),
        settings.client_ipv4_prefix,
        settings.client_ipv6_prefix,
    )
    .context(
        "MORPHEUS_TRUSTED_PROXIES, MORPHEUS_CLIENT_IPV4_PREFIX or MORPHEUS_CLIENT_IPV6_PREFIX",
    )?;
    let connection_limits = connection_limits(settings, &client_addresses, &metrics)?;
    let lifetimes = TokenLifetimes {
        access: chrono::Duration::minutes(settings.access_token_minutes),
        refresh: chrono::Duration::days(settings.refresh_token_days),
    };
    let gateway_address = settings
        .gateway_delegate_address
        .as_deref()
        .map(EthAddress::parse)
        .transpose()
        .context("MORPHEUS_GATEWAY_DELEGATE_ADDRESS must be 0x followed by 40 hex digits")?;
    let spender = settings
        .diamond_contract_address
        .as_deref()
        .map(EthAddress::parse)
        .transpose()
        .context("MORPHEUS_DIAMOND_CONTRACT_ADDRESS must be 0x followed by 40 hex digits")?;
    let providers = crate::providers::load(
        settings.providers_file.as_deref(),
        Duration::from_millis(settings.proxy_router_connect_timeout_ms),
        &instrumented(&metrics),
    )?;
    let provider_prices = providers.prices;
    let upstreams = Arc::new(providers.upstreams);
    let mut aliases = settings.model_aliases()?;
    aliases.extend(upstreams.aliases());
    let catalogue = Arc::new(ModelCatalogue::new(CatalogueOptions {
        default_model: settings.default_model.clone(),
        aliases,
        provided: upstreams.models(),
    }));
    let automation = AutomationService::new(db.clone());
    let db_for_janitor = db.clone();
    let market: Arc<dyn morpheus_domain::ports::Marketplace> = Arc::new(
        InstrumentedMarketplace::new(marketplace.market.clone(), metrics.clone()),
    );
    let pool = SessionPool::new(
        db.clone(),
        db.clone(),
        market.clone(),
        replica_name(),
        pool_settings(settings),
    );
    let waits = metrics.pool_queue_wait.clone();
    pool.observe_waits(Arc::new(move |waited| waits.observe(waited.as_secs_f64())));
    let governor = StakeGovernor::new(
        stake_settings(settings)?,
        counters.clone(),
        market.clone(),
        catalogue.clone(),
    );
    let sessions = SessionService::new(
        db.clone(),
        market.clone(),
        automation.clone(),
        catalogue.clone(),
        spender,
        pool,
    )
    .with_governor(governor);
    let (usage, usage_writer) =
        BatchedUsageWriter::start(db.clone(), UsageWriterOptions::default());
    let key_cache = ApiKeyCache::new(ApiKeyCacheOptions {
        capacity: settings.api_key_cache_capacity,
        max_age: Duration::from_secs(settings.api_key_cache_seconds),
    });
    let tariff = crate::pricing::load(settings.pricing_file.as_deref())?
        .with_provider_prices(&provider_prices);
    // Large limits are counted from per-replica allowances, small ones in Redis each time.
    let allowances = (settings.redis_url.is_some() && settings.limit_allowances)
        .then(|| Arc::new(AllowanceCounters::new(counters.clone())));
    let limiter = RateLimiter::new(
        allowances
            .clone()
            .map_or_else(|| counters.clone(), |a| a as Arc<dyn Counters>),
        tariff.limits,
    );
    let billing = BillingService::new(
        db.clone(),
        tariff.pricing,
        BillingSettings {
            enabled: settings.billing,
            signup_credit: settings.signup_credit_usd.parse().map_err(
                |invalid: morpheus_domain::validation::Invalid| anyhow::anyhow!(invalid.message),
            )?,
            lease: morpheus_domain::services::LeaseSettings {
                enabled: settings.credit_lease,
                // Renewed well before the reconciliation could take it for a dead process's.
                max_age: Duration::from_secs(settings.hold_max_pending_seconds) / 2,
                ..Default::default()
            },
        },
    );
    let state = AppState {
        accounts: AccountService::new(db.clone(), db.clone(), hasher, tokens, throttle, lifetimes)
            .with_api_key_cache(key_cache.clone())
            .with_user_cache(Duration::from_secs(settings.user_cache_seconds))
            .with_fresh_sign_in(chrono::Duration::seconds(settings.fresh_sign_in_seconds)),
        api_keys: ApiKeyService::new(db.clone(), ApiKeyHasher::new(&secrets.api_key_pepper)?)
            .with_max_active_per_user(settings.max_api_keys_per_user)
            .with_creations_per_day(settings.key_creations_per_day)
            .with_cache(key_cache.clone()),
        wallets: WalletService::new(db.clone(), Arc::new(wallet_sealer(secrets)?)),
        delegations: DelegationService::new(db.clone(), gateway_address).with_limits(
            DelegationLimits {
                per_user: settings.max_delegations_per_user,
                max_chars: settings.max_delegation_chars,
            },
        ),
        automation,
        chat_history: ChatHistoryService::new(db.clone()).with_limits(ChatHistoryLimits {
            chats_per_user: settings.max_chats_per_user,
            messages_per_chat: settings.max_messages_per_chat,
            message_bytes: settings.max_chat_message_bytes,
        }),
        chat: ChatService::new(sessions.clone())
            .with_billing(billing.clone())
            .with_limits(limiter.clone())
            .with_upstreams(upstreams.clone(), marketplace.configured),
        billing,
        limiter,
        stream_drains: morpheus_api::stream_drains::StreamDrains::new(
            settings.stream_drains,
            Duration::from_secs(settings.stream_drain_seconds),
        ),
        sessions,
        usage: Arc::new(usage),
        chat_admission: ChatAdmission::new(Duration::from_millis(settings.chat_shed_lateness_ms)),
        chat_limits: ChatLimits {
            max_tokens: settings.chat_max_tokens,
            max_choices: settings.chat_max_choices,
            max_messages: settings.chat_max_messages,
            max_tools: settings.chat_max_tools,
        },
        sse_keep_alive: Duration::from_secs(settings.sse_keep_alive_seconds),
        stream_continuation: settings.stream_continuation,
        uploads: morpheus_api::UploadLimits {
            max_bytes: settings.max_upload_bytes,
            deadline: Duration::from_millis(settings.upload_read_timeout_ms),
        },
        marketplace_configured: marketplace.configured,
        health: db,
        readiness: ReadinessChecks::default(),
        metrics,
        metrics_access: metrics_access(settings)?,
        lifecycle: Lifecycle::new(),
        client_addresses,
        connection_limits,
        admin_token: settings
            .admin_token
            .as_ref()
            .map(|token| SecretToken::new(token.expose_secret()))
            .transpose()?,
        counters,
        rated_bids: RatedBidsCache::new(RatedBidsSettings {
            fresh_for: Duration::from_millis(settings.rated_bids_cache_ms),
            per_client_burst: settings.rated_bids_per_client,
            per_client_refill: Duration::from_millis(settings.rated_bids_client_refill_ms),
        }),
        meta: ServiceMeta {
            name: "Morpheus API Gateway".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "OpenAI-compatible API gateway for the Morpheus inference marketplace"
                .to_owned(),
        },
    };
    Ok(Built {
        state,
        work: Work {
            usage_writer,
            janitor: SessionJanitor::new(db_for_janitor.clone(), market)
                .adopting_orphans(catalogue, orphan_grace(settings)),
            revocations: RevocationWatcher::new(db_for_janitor, key_cache),
            allowances,
            provider_prices,
            upstreams,
        },
    })
}

/// Dresses a provider's client with the gateway's metrics.
pub(crate) fn instrumented(
    metrics: &Metrics,
) -> impl Fn(Arc<dyn morpheus_domain::ports::Provider>) -> Arc<dyn morpheus_domain::ports::Provider>
{
    let metrics = metrics.clone();
    move |provider| Arc::new(InstrumentedProvider::new(provider, metrics.clone()))
}

/// How long after its opening on chain a session of the node's wallet that the database does
/// not know is left alone before the janitor adopts or closes it: an open's whole time limit
/// and its recovery window (until then the open may still record it), and a few seconds for
/// the clocks of the chain and of this host.
pub fn orphan_grace(settings: &Settings) -> Duration {
    Duration::from_millis(
        settings.proxy_router_open_timeout_ms + settings.proxy_router_open_recovery_ms,
    ) + Duration::from_secs(5)
}

/// This process's name in the pool's leases: unique among replicas, and readable in the
/// database (the host, the process, and a random part for restarts).
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The operator's stake caps (README "Stake governance").
fn stake_settings(settings: &Settings) -> anyhow::Result<StakeSettings> {
    use morpheus_domain::parse_mor;
    let mor = |value: &Option<String>, name: &str| {
        value
            .as_deref()
            .map(parse_mor)
            .transpose()
            .map_err(|invalid| anyhow::anyhow!("{name}: {}", invalid.message))
    };
    let factor = parse_mor(&settings.stake_estimate_factor).map_err(|invalid| {
        anyhow::anyhow!("MORPHEUS_STAKE_ESTIMATE_FACTOR: {}", invalid.message)
    })?;
    Ok(StakeSettings {
        daily_budget: mor(
            &settings.stake_daily_budget_mor,
            "MORPHEUS_STAKE_DAILY_BUDGET_MOR",
        )?,
        max_price_per_second: mor(
            &settings.max_bid_price_per_second_mor,
            "MORPHEUS_MAX_BID_PRICE_PER_SECOND_MOR",
        )?,
        low_water_mark: mor(
            &settings.mor_low_water_mark_mor,
            "MORPHEUS_MOR_LOW_WATER_MARK_MOR",
        )?,
        warm_models: settings
            .warm_models
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|model| !model.is_empty())
            .map(str::to_owned)
            .collect(),
        balance_cache: Duration::from_secs(settings.mor_balance_cache_seconds),
        // The factor is parsed as a MOR amount (18 decimals); kept in millionths.
        stake_factor_ppm: (factor / 1_000_000_000_000).max(1),
        max_user_sessions: Some(settings.max_sessions_per_user).filter(|&n| n > 0),
        max_session_duration: Some(settings.max_session_duration_seconds),
    })
}

fn pool_settings(settings: &Settings) -> PoolSettings {
    PoolSettings {
        max_sessions_per_model: settings.pool_max_sessions_per_model,
        queue_depth: settings.pool_queue_depth,
        queue_wait: Duration::from_millis(settings.pool_queue_ms),
        lease: Duration::from_secs(settings.pool_lease_seconds),
        idle_release: Duration::from_secs(2),
        idle_grace: (settings.pool_idle_grace_seconds > 0)
            .then(|| Duration::from_secs(settings.pool_idle_grace_seconds)),
        // An open and its recovery, with room to spare: a reservation older than that is
        // from a replica that died mid-open.
        open_stale_after: Duration::from_millis(
            settings.proxy_router_open_timeout_ms + settings.proxy_router_open_recovery_ms,
        ) + Duration::from_secs(60),
        end_margin: Duration::from_secs(30),
        open_attempts: settings.pool_open_attempts,
        provider_cooldown: Duration::from_secs(settings.pool_provider_cooldown_seconds),
    }
}

/// The connection caps, derived from the open-file limit (raised to its hard limit first).
fn connection_limits(
    settings: &Settings,
    client_addresses: &ClientAddressRules,
    metrics: &Metrics,
) -> anyhow::Result<Arc<ConnectionLimits>> {
    let open_files = open_files::raise_limit()?;
    let caps =
        open_files::connection_caps(settings.max_connections, open_files, settings.db_pool_size)?;
    tracing::info!(
        open_files,
        max_connections = caps.served,
        accepted_at_most = caps.accepted,
        max_connections_per_client = settings.max_connections_per_client,
        "connection caps"
    );
    Ok(ConnectionLimits::new(
        caps.served,
        caps.accepted,
        settings.max_connections_per_client,
        client_addresses.clone(),
        metrics.refused_connections.clone(),
    ))
}

/// Who may read `/metrics` on the main listener. In production it is never open: without a
/// token or a separate listener it is off.
fn metrics_access(settings: &Settings) -> anyhow::Result<MetricsAccess> {
    Ok(match (&settings.metrics_bind, &settings.metrics_token) {
        (Some(_), _) => MetricsAccess::Elsewhere,
        // Its length is checked with the settings.
        (None, Some(token)) => {
            MetricsAccess::Token(Box::new(SecretToken::new(token.expose_secret())?))
        }
        (None, None) if settings.env == Environment::Production => {
            tracing::warn!(
                "GET /metrics is off: set MORPHEUS_METRICS_TOKEN or MORPHEUS_METRICS_BIND to enable it in production"
            );
            MetricsAccess::Elsewhere
        }
        (None, None) => MetricsAccess::Open,
    })
}

/// What [`build_state`] assembles: the handlers' state and what the background tasks work on.
pub struct Built {
    pub state: AppState,
    pub work: Work,
}

fn run(
    listener: TcpListener,
    state: AppState,
    settings: &Settings,
    grace: Duration,
) -> anyhow::Result<Server> {
    let limits = state.connection_limits.clone();
    let workers = workers(settings.workers);
    // actix counts a connection per worker from accept to close; the accept loop pauses while
    // every worker is at its share.
    let accepted_per_worker = (limits.accepted() / workers).max(1);
    let state = web::Data::new(state);
    let body_limit = web::Data::new(BodyLimit::default());
    let body_deadline = web::Data::new(BodyDeadline(Duration::from_millis(
        settings.body_read_timeout_ms,
    )));
    let chat_body_limit = web::Data::new(ForwardedBodyLimit(settings.chat_max_body_bytes));
    let chat_body_deadline = web::Data::new(ForwardedBodyDeadline(Duration::from_millis(
        settings.chat_body_read_timeout_ms,
    )));
    let cors = CorsPolicy::from_settings(settings)?;
    let server = HttpServer::new(move || {
        let (app, openapi) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .app_data(state.clone())
            .app_data(body_limit.clone())
            .app_data(body_deadline.clone())
            .app_data(chat_body_limit.clone())
            .app_data(chat_body_deadline.clone())
            .configure(morpheus_api::configure)
            .split_for_parts();
        // CORS outside the connection guard, so a page also reads its 503s.
        let cors = cors.as_ref().map(CorsPolicy::middleware);
        app.wrap(middleware::from_fn(connections::guard))
            .wrap(middleware::Condition::new(
                cors.is_some(),
                cors.unwrap_or_default(),
            ))
            .wrap(middleware::from_fn(request_context::observe))
            .service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_PATH, openapi))
            .default_service(web::to(spec::unmatched))
    })
    .workers(workers)
    // Every connection is counted from accept to close; over a cap it is answered 503 at once.
    .on_connect(move |io, data| limits.on_connect(io, data))
    .max_connections(accepted_per_worker)
    // Small SSE writes must leave at once: with Nagle on, a kept-alive client's delayed ACK
    // held each stream's first event back ~40 ms (found by the benchmark).
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    // A client that closes its side of the connection has gone: drop its response at once, so
    // a stream waiting on a slow provider cancels the upstream request instead of noticing
    // only at its next write (half-closed HTTP/1 clients are not supported).
    .h1_allow_half_closed(false)
    .listen(listener)?
    .run();
    Ok(server)
}

/// `GET /metrics` alone, on its own address (for a scraper on a private network).
fn run_metrics(bind: &str, state: AppState) -> anyhow::Result<(ServerHandle, u16)> {
    let listener =
        TcpListener::bind(bind).with_context(|| format!("binding the metrics listener {bind}"))?;
    let port = listener.local_addr()?.port();
    tracing::info!(address = %listener.local_addr()?, "metrics listening");
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(morpheus_api::metrics_only)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    // A server serves only while its future is polled.
    let handle = server.handle();
    tokio::spawn(server);
    Ok((handle, port))
}
