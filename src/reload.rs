//! What SIGHUP reads again without a restart: the providers file (routing, the providers'
//! models and aliases, their prices) and the pricing file (prices and the operator's rate
//! limits). A file with a mistake is refused whole and what is in force stays; the log says
//! why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use morpheus_api::metrics::Metrics;
use morpheus_domain::services::{BillingService, ModelCatalogue, RateLimiter, Upstreams};

use crate::pricing::ProviderPrices;
use crate::supervisor::Supervisor;

/// The files and the parts of the running gateway they shape.
pub struct Rereadable {
    pub pricing_file: Option<PathBuf>,
    pub providers_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// `MORPHEUS_MODEL_ALIASES`: kept, with the providers' aliases added again.
    pub setting_aliases: Vec<(String, String)>,
    /// Whether a proxy-router is configured: without one the providers' models are the whole
    /// catalogue.
    pub marketplace: bool,
    pub billing: BillingService,
    pub limiter: RateLimiter,
    pub catalogue: Arc<ModelCatalogue>,
    pub upstreams: Arc<Upstreams>,
    pub metrics: Metrics,
    /// The providers file's prices in force, added to each reading of the pricing file.
    pub provider_prices: ProviderPrices,
}

impl Rereadable {
    fn any(&self) -> bool {
        self.pricing_file.is_some() || self.providers_file.is_some()
    }

    /// Reads the files again and puts what they say in force.
    fn reread(&mut self) {
        if !self.any() {
            tracing::info!("SIGHUP: no pricing or providers file to re-read");
            return;
        }
        if let Some(path) = &self.providers_file {
            let wrap = crate::startup::instrumented(&self.metrics);
            match crate::providers::load(Some(path), self.connect_timeout, &wrap) {
                Ok(providers) => {
                    self.upstreams.reroute(providers.upstreams);
                    let mut aliases = self.setting_aliases.clone();
                    aliases.extend(self.upstreams.aliases());
                    self.catalogue
                        .set_provided(self.upstreams.models(), aliases);
                    if !self.marketplace {
                        // Loaded now even if it was not (a file that declared no provider).
                        self.catalogue
                            .replace(Vec::new(), Vec::new(), chrono::Utc::now());
                    }
                    self.provider_prices = providers.prices;
                    tracing::info!(file = %path.display(), "SIGHUP: providers re-read");
                }
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "SIGHUP: the providers file is refused; the routing in force is kept"
                ),
            }
        }
        match crate::pricing::load(self.pricing_file.as_deref()) {
            Ok(tariff) => {
                let tariff = tariff.with_provider_prices(&self.provider_prices);
                self.billing.reprice(tariff.pricing);
                self.limiter.set_limits(tariff.limits);
                tracing::info!("SIGHUP: prices and limits re-read");
            }
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "SIGHUP: the pricing file is refused; the prices in force are kept"
            ),
        }
    }
}

/// Re-reads the files on each SIGHUP, until shutdown. Listened for without them too: a
/// habitual `kill -HUP` must not end the gateway.
pub fn on_hangup(supervisor: &mut Supervisor, mut files: Rereadable) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: the pricing and providers files are read at start-up only");
            return;
        }
    };
    let listener = tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // Two small files read and parsed: as the start-up does, on the spot.
            files.reread();
        }
    });
    supervisor.at_shutdown("files_reload", async move { listener.abort() });
}
