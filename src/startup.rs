//! Wiring: adapters → services → HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use morpheus_api::auth::{
    Argon2Hasher, AuthThrottleSettings, GovernorAuthThrottle, JwtCodec, JwtSettings,
};
use morpheus_api::extract::{BodyLimit, ForwardedBodyLimit};
use morpheus_api::{ApiDoc, AppState, ServiceMeta};
use morpheus_domain::EthAddress;
use morpheus_domain::crypto::{ApiKeyHasher, WalletSealer};
use morpheus_domain::services::*;
use morpheus_storage::{
    BatchedUsageWriter, Database, DatabaseUrl, PoolOptions, UsageWriterOptions, UsageWriterTask,
};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::configuration::Settings;
use crate::marketplace::{self, MarketplaceWiring};
use crate::secrets::Secrets;
use crate::spec;

/// Where the generated document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    usage_writer: UsageWriterTask,
    /// The demo simulator, when `--simulate-marketplace` started one.
    simulator: Option<morpheus_router_sim::SimHandle>,
}

/// How long start-up waits for the first model list before serving without one (requests
/// that need it answer 503 until the background refresh succeeds).
const FIRST_CATALOGUE_WAIT: Duration = Duration::from_secs(5);

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    ///
    /// # Errors
    /// Bad configuration, missing production secrets, an unreachable database, or a busy port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let secrets = Secrets::resolve(&settings)?;
        let database = connect(&settings).await?;
        let marketplace = marketplace::connect(&settings).await?;
        let Built {
            state,
            usage_writer,
            janitor,
        } = build_state(&settings, &secrets, database, &marketplace)?;
        start_marketplace_tasks(&settings, &marketplace, &state, janitor).await;
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        tracing::info!(address = %listener.local_addr()?, "morpheus-gateway listening");
        spawn_housekeeping(state.accounts.clone());
        let server = run(
            listener,
            state,
            workers(settings.workers),
            settings.chat_max_body_bytes,
        )?;
        Ok(Self {
            port,
            server,
            usage_writer,
            simulator: marketplace.simulator,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The demo simulator's address, when one runs in-process.
    pub fn simulator_url(&self) -> Option<String> {
        self.simulator.as_ref().map(|s| s.base_url())
    }

    /// # Errors
    /// When the server fails while running.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        // Whatever the server's fate, the usage records already taken are written.
        self.usage_writer.flush_and_stop().await;
        Ok(served?)
    }
}

async fn start_marketplace_tasks(
    settings: &Settings,
    wiring: &MarketplaceWiring,
    state: &AppState,
    janitor: SessionJanitor,
) {
    if !wiring.configured {
        return;
    }
    let catalogue = state.sessions.catalogue().clone();
    let first = marketplace::refresh_catalogue(&*wiring.market, wiring.feed.as_deref(), &catalogue);
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
    marketplace::spawn_catalogue_refresh(
        wiring.market.clone(),
        wiring.feed.clone(),
        catalogue,
        Duration::from_secs(settings.models_refresh_seconds.max(1)),
    );
    marketplace::spawn_session_janitor(
        janitor,
        Duration::from_secs(settings.session_sweep_seconds.max(1)),
    );
}

/// How often expired refresh-token records are purged. Every replica does it; the delete is
/// idempotent, so they need no coordination.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

fn spawn_housekeeping(accounts: AccountService) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match accounts.purge_expired_refresh_tokens().await {
                Ok(purged) => tracing::debug!(purged, "purged expired refresh tokens"),
                Err(e) => tracing::warn!(error.cause_chain = ?e, "purging refresh tokens failed"),
            }
        }
    });
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

async fn connect(settings: &Settings) -> anyhow::Result<Database> {
    let url = DatabaseUrl::parse(&settings.database_url)?;
    tracing::info!(database = %url, "connecting to the database");
    let options = PoolOptions {
        max_size: settings.db_pool_size,
        connection_timeout: Duration::from_millis(settings.db_connect_timeout_ms),
    };
    let database = Database::connect(&url, options)?;
    database.migrate().await.context("applying migrations")?;
    Ok(database)
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
    let throttle = Arc::new(GovernorAuthThrottle::new(AuthThrottleSettings {
        per_account_burst: settings.login_attempts_per_account,
        per_account_refill: Duration::from_secs(settings.login_account_refill_seconds),
        per_client_burst: settings.login_attempts_per_client,
        per_client_refill: Duration::from_secs(settings.login_client_refill_seconds),
        registrations_burst: settings.registrations_per_client,
        registrations_refill: Duration::from_secs(settings.registration_client_refill_seconds),
    }));
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
    let catalogue = Arc::new(ModelCatalogue::new(CatalogueOptions {
        default_model: settings.default_model.clone(),
        aliases: settings.model_aliases()?,
    }));
    let automation = AutomationService::new(db.clone());
    let db_for_janitor = db.clone();
    let sessions = SessionService::new(
        db.clone(),
        marketplace.market.clone(),
        automation.clone(),
        catalogue,
        spender,
    );
    let (usage, usage_writer) =
        BatchedUsageWriter::start(db.clone(), UsageWriterOptions::default());
    let state = AppState {
        accounts: AccountService::new(db.clone(), db.clone(), hasher, tokens, throttle, lifetimes),
        api_keys: ApiKeyService::new(db.clone(), ApiKeyHasher::new(&secrets.api_key_pepper)?)
            .with_max_active_per_user(settings.max_api_keys_per_user),
        wallets: WalletService::new(db.clone(), Arc::new(wallet_sealer(secrets)?)),
        delegations: DelegationService::new(db.clone(), gateway_address),
        automation,
        chat: ChatService::new(sessions.clone()),
        sessions,
        usage: Arc::new(usage),
        chat_limits: ChatLimits {
            max_tokens: settings.chat_max_tokens,
            max_choices: settings.chat_max_choices,
            max_messages: settings.chat_max_messages,
            max_tools: settings.chat_max_tools,
        },
        sse_keep_alive: Duration::from_secs(settings.sse_keep_alive_seconds.max(1)),
        marketplace_configured: marketplace.configured,
        health: db,
        meta: ServiceMeta {
            name: "Morpheus API Gateway".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "OpenAI-compatible API gateway for the Morpheus inference marketplace"
                .to_owned(),
        },
    };
    Ok(Built {
        state,
        usage_writer,
        janitor: SessionJanitor::new(db_for_janitor, marketplace.market.clone()),
    })
}

/// What [`build_state`] assembles: the handlers' state and the background pieces.
pub struct Built {
    pub state: AppState,
    pub usage_writer: UsageWriterTask,
    pub janitor: SessionJanitor,
}

fn run(
    listener: TcpListener,
    state: AppState,
    workers: usize,
    chat_max_body_bytes: usize,
) -> anyhow::Result<Server> {
    let state = web::Data::new(state);
    let body_limit = web::Data::new(BodyLimit::default());
    let chat_body_limit = web::Data::new(ForwardedBodyLimit(chat_max_body_bytes));
    let server = HttpServer::new(move || {
        let (app, openapi) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .app_data(state.clone())
            .app_data(body_limit.clone())
            .app_data(chat_body_limit.clone())
            .configure(morpheus_api::configure)
            .split_for_parts();
        app.wrap(middleware::Logger::new("%a \"%r\" %s %b %Dms"))
            .service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_PATH, openapi))
            .default_service(web::to(spec::unmatched))
    })
    .workers(workers)
    // A client that closes its side of the connection has gone: drop its response at once, so
    // a stream waiting on a slow provider cancels the upstream request instead of noticing
    // only at its next write (half-closed HTTP/1 clients are not supported).
    .h1_allow_half_closed(false)
    .listen(listener)?
    .run();
    Ok(server)
}
