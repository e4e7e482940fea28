//! The gateway's background tasks, registered on the [`Supervisor`].
//!
//! | task | where | every |
//! |---|---|---|
//! | `revocation_log` | each replica | 250 ms: other replicas' key revocations reach this one's cache |
//! | `revocation_log_purge` | one replica | hour: log entries older than a day |
//! | `last_used_writer` | each replica | 5 s: API keys' `last_used_at`, batched (and at shutdown) |
//! | `refresh_token_purge` | one replica | hour: expired refresh-token records |
//! | `catalogue_refresh` | each replica | `models_refresh_seconds`: the model list this replica serves |
//! | `session_sweep` | one replica | `session_sweep_seconds`: ended sessions closed, records reconciled, orphaned sessions adopted or closed |
//! | `session_pool_leases` | each replica | a quarter of `pool_lease_seconds`: this replica's pooled sessions' leases renewed |
//! | `session_pool_idle` | each replica | second: sessions idle 2 s let go for other replicas (one per model kept warm); with an idle grace, sessions nobody took for that long closed |
//! | `limit_allowance_return` | each replica | second (with Redis and `limit_allowances`): rate-limit allowances unused 2 s given back to Redis (and all at shutdown) |
//! | `credit_lease_flush` | each replica | 250 ms (with `credit_lease`): lease-backed charges written, idle and old leases returned (and all at shutdown) |
//! | `hold_reconciliation` | one replica | a quarter of `hold_max_pending_seconds` (at most a minute): credit holds a dead process left pending past the bound voided |
//!
//! SIGHUP re-reads the pricing and providers files (`crate::reload`; a file with a mistake is
//! refused and what is in force is kept).
//!
//! The usage writer is not periodic (a batch leaves when it fills or its first record has
//! waited long enough); it is flushed at shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use morpheus_api::AppState;
use morpheus_counters::AllowanceCounters;
use morpheus_domain::services::{RevocationWatcher, SessionJanitor, Upstreams};
use morpheus_storage::UsageWriterTask;

use crate::configuration::Settings;
use crate::marketplace::{self, MarketplaceWiring};
use crate::supervisor::Supervisor;

/// How often the revocation log is read: other replicas' revocations reach this one's key
/// cache within about this long (the issue asks for 1 s).
const REVOCATION_POLL: Duration = Duration::from_millis(250);

/// How often API keys' `last_used_at` values are written.
const LAST_USED_FLUSH: Duration = Duration::from_secs(5);

/// How often idle pooled sessions are looked at (let go, or closed after the idle grace).
const POOL_IDLE_CHECK: Duration = Duration::from_secs(1);

/// How often the rate limiter's unused allowances are looked at (given back after 2 s idle).
const ALLOWANCE_CHECK: Duration = Duration::from_secs(1);

/// How often expired records (refresh tokens, old revocations) are purged.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// What the tasks work on, beside the handlers' state.
pub struct Work {
    pub usage_writer: UsageWriterTask,
    pub janitor: SessionJanitor,
    pub revocations: RevocationWatcher,
    /// The rate limiter's allowances of large limits (with Redis).
    pub allowances: Option<Arc<AllowanceCounters>>,
    /// The providers file's prices, added again to each re-read of the pricing file.
    pub provider_prices: crate::pricing::ProviderPrices,
    /// The routing the providers file declares, replaced when it is re-read.
    pub upstreams: Arc<Upstreams>,
}

/// Registers every background task of the gateway.
pub fn register(
    supervisor: &mut Supervisor,
    settings: &Settings,
    state: &AppState,
    market: &MarketplaceWiring,
    work: Work,
) {
    let Work {
        usage_writer,
        janitor,
        revocations,
        allowances,
        provider_prices,
        upstreams,
    } = work;

    if let Some(allowances) = allowances {
        let idle = allowances.clone();
        supervisor
            .every("limit_allowance_return", ALLOWANCE_CHECK)
            .spawn(move || {
                let allowances = idle.clone();
                async move {
                    allowances.give_back_idle(false).await?;
                    Ok(())
                }
            });
        supervisor.at_shutdown("limit_allowances", async move {
            if let Err(error) = allowances.give_back_idle(true).await {
                tracing::warn!(%error, "giving rate-limit allowances back at shutdown failed; they stand until their windows end");
            }
        });
    }

    let watcher = Arc::new(tokio::sync::Mutex::new(revocations));
    let poller = watcher.clone();
    supervisor
        .every("revocation_log", REVOCATION_POLL)
        .spawn(move || {
            let watcher = poller.clone();
            async move {
                let evicted = watcher.lock().await.poll().await?;
                if evicted > 0 {
                    tracing::debug!(evicted, "forgot API keys revoked elsewhere");
                }
                Ok(())
            }
        });
    supervisor
        .every("revocation_log_purge", HOUSEKEEPING_INTERVAL)
        .on_one_replica()
        .spawn(move || {
            let watcher = watcher.clone();
            async move {
                let purged = watcher.lock().await.purge_old().await?;
                tracing::debug!(purged, "purged old API-key revocations");
                Ok(())
            }
        });

    let keys = state.api_keys.clone();
    supervisor
        .every("last_used_writer", LAST_USED_FLUSH)
        .spawn(move || {
            let keys = keys.clone();
            async move { keys.flush_last_used().await.map(drop) }
        });
    let keys = state.api_keys.clone();
    supervisor.at_shutdown("last_used_writer", async move {
        if let Err(error) = keys.flush_last_used().await {
            tracing::warn!(error.cause_chain = ?error, "writing API keys' last use at shutdown failed");
        }
    });
    // Whatever the server's fate, the usage records already taken are written.
    supervisor.at_shutdown("usage_writer", usage_writer.flush_and_stop());

    let accounts = state.accounts.clone();
    supervisor
        .every("refresh_token_purge", HOUSEKEEPING_INTERVAL)
        .on_one_replica()
        .spawn(move || {
            let accounts = accounts.clone();
            async move {
                let purged = accounts.purge_expired_refresh_tokens().await?;
                tracing::debug!(purged, "purged expired refresh tokens");
                Ok(())
            }
        });

    let billing = state.billing.clone();
    let max_pending = Duration::from_secs(settings.hold_max_pending_seconds);
    supervisor
        .every(
            "hold_reconciliation",
            (max_pending / 4).clamp(Duration::from_millis(250), Duration::from_secs(60)),
        )
        .on_one_replica()
        .spawn(move || {
            let billing = billing.clone();
            async move { billing.reconcile(max_pending).await.map(drop) }
        });
    if state.billing.leasing() {
        let billing = state.billing.clone();
        supervisor
            .every(
                "credit_lease_flush",
                morpheus_domain::services::LEASE_FLUSH_INTERVAL,
            )
            .spawn(move || {
                let billing = billing.clone();
                async move { billing.flush_leases().await }
            });
        let billing = state.billing.clone();
        supervisor.at_shutdown("credit_leases", async move {
            if let Err(error) = billing.return_leases().await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "returning credit leases at shutdown failed"
                );
            }
        });
    }
    crate::reload::on_hangup(
        supervisor,
        crate::reload::Rereadable {
            pricing_file: settings.pricing_file.clone(),
            providers_file: settings.providers_file.clone(),
            connect_timeout: Duration::from_millis(settings.proxy_router_connect_timeout_ms),
            // Checked at start-up: the same setting parses the same way.
            setting_aliases: settings.model_aliases().unwrap_or_default(),
            marketplace: market.configured,
            billing: state.billing.clone(),
            limiter: state.limiter.clone(),
            catalogue: state.sessions.catalogue().clone(),
            upstreams,
            metrics: state.metrics.clone(),
            provider_prices,
        },
    );

    if !market.configured {
        return;
    }
    let (models, feed, catalogue) = (
        market.market.clone(),
        market.feed.clone(),
        state.sessions.catalogue().clone(),
    );
    supervisor
        .every(
            "catalogue_refresh",
            Duration::from_secs(settings.models_refresh_seconds),
        )
        // The first list is loaded at start-up.
        .first_run_after_interval()
        .spawn(move || {
            let (models, feed, catalogue) = (models.clone(), feed.clone(), catalogue.clone());
            async move {
                marketplace::refresh_catalogue(&*models, feed.as_deref(), &catalogue)
                    .await
                    .map_err(|error| {
                        anyhow::Error::new(error)
                            .context("refreshing the model catalogue (the last list is kept)")
                    })
            }
        });
    let pool = state.sessions.pool().clone();
    supervisor
        .every(
            "session_pool_leases",
            Duration::from_secs(settings.pool_lease_seconds) / 4,
        )
        .first_run_after_interval()
        .spawn(move || {
            let pool = pool.clone();
            async move { pool.renew().await }
        });
    let pool = state.sessions.pool().clone();
    supervisor
        .every("session_pool_idle", POOL_IDLE_CHECK)
        .first_run_after_interval()
        .spawn(move || {
            let pool = pool.clone();
            async move { pool.let_go().await }
        });
    let pool = state.sessions.pool().clone();
    // Another replica can take this one's idle sessions at once instead of after the lease.
    supervisor.at_shutdown("session_pool", async move {
        if let Err(error) = pool.release_all().await {
            tracing::warn!(error.cause_chain = ?error, "letting go of pooled sessions at shutdown failed");
        }
    });
    let metrics = state.metrics.clone();
    supervisor
        .every(
            "session_sweep",
            Duration::from_secs(settings.session_sweep_seconds),
        )
        .on_one_replica()
        .spawn(move || {
            let (janitor, metrics) = (janitor.clone(), metrics.clone());
            async move {
                let report = janitor.run_once(Utc::now()).await?;
                if report.eventful() {
                    tracing::info!(?report, "session sweep");
                }
                if !report.reconcile_interrupted {
                    // MOR has 18 decimals; a float gauge holds any stake to ample precision.
                    metrics
                        .stake_locked
                        .set(report.stake_locked_wei as f64 / 1e18);
                }
                Ok(())
            }
        });
}
