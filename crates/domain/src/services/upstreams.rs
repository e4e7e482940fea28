//! Where a model's requests may go: the marketplace and the operator's plain providers, in the
//! order of their priority (lower first), equal priorities shared by weight, and an upstream
//! that just failed left alone for a while (its `Retry-After`, else a default cooldown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::ResolvedModel;
use crate::model::*;
use crate::ports::Provider;

/// A model as a provider serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidedModel {
    /// What clients send as `model`.
    pub name: String,
    /// What the provider calls it (sent upstream in place of `name`).
    pub upstream_name: String,
    /// More names clients may use.
    pub aliases: Vec<String>,
    pub model_type: ModelType,
}

/// One provider as the operator declared it.
#[derive(Clone)]
pub struct ProviderEntry {
    /// Unique; it names the upstream in usage records and metrics.
    pub name: String,
    pub client: Arc<dyn Provider>,
    /// Lower is tried first.
    pub priority: u32,
    /// Share among upstreams of equal priority (at least 1).
    pub weight: u32,
    pub models: Vec<ProvidedModel>,
}

impl std::fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

/// One place to send a request to.
#[derive(Clone)]
pub enum Upstream {
    Marketplace,
    Provider {
        name: String,
        client: Arc<dyn Provider>,
        /// The provider's own name for the model.
        model: String,
    },
}

impl Upstream {
    /// `marketplace`, or the provider's name: what usage records say served a request.
    pub fn label(&self) -> &str {
        match self {
            Self::Marketplace => "marketplace",
            Self::Provider { name, .. } => name,
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

pub struct Upstreams {
    /// Replaced whole when the operator's file is read again; a request plans on the table it
    /// found.
    table: RwLock<Arc<RoutingTable>>,
    /// Provider name → until when it is left alone (kept across re-reads: a provider that
    /// failed a moment ago is no better for being declared again).
    cooling: Mutex<HashMap<String, Instant>>,
    /// Turns the weighted rotation among equal priorities.
    turn: AtomicU64,
}

/// The providers and the marketplace's place among them, as one declaration gave them.
struct RoutingTable {
    providers: Vec<ProviderEntry>,
    marketplace_priority: u32,
    marketplace_weight: u32,
    default_cooldown: Duration,
}

/// How long a failed provider is left alone without a `Retry-After`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured (a provider cannot bench itself for a day).
const MAX_COOLDOWN: Duration = Duration::from_secs(600);

impl Upstreams {
    /// No providers: every request goes to the marketplace.
    pub fn marketplace_only() -> Self {
        Self::new(Vec::new(), 0, 1, DEFAULT_COOLDOWN)
    }

    pub fn new(
        providers: Vec<ProviderEntry>,
        marketplace_priority: u32,
        marketplace_weight: u32,
        default_cooldown: Duration,
    ) -> Self {
        Self {
            table: RwLock::new(Arc::new(RoutingTable {
                providers,
                marketplace_priority,
                marketplace_weight: marketplace_weight.max(1),
                default_cooldown,
            })),
            cooling: Mutex::new(HashMap::new()),
            turn: AtomicU64::new(0),
        }
    }

    fn table(&self) -> Arc<RoutingTable> {
        // A poisoned lock only means a writer panicked between two whole-value swaps.
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Routes by `declared` from now on (the operator's file, read again); requests already
    /// planned keep their plan, and cooldowns stand.
    pub fn reroute(&self, declared: Upstreams) {
        let table = declared.table();
        *self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = table;
    }

    pub fn has_providers(&self) -> bool {
        !self.table().providers.is_empty()
    }

    /// The models the providers serve, as catalogue entries (the marketplace's own entries
    /// win for a name both have). Their ids are derived from their names: stable, and never
    /// a model on chain.
    pub fn models(&self) -> Vec<MarketModel> {
        let mut seen = std::collections::HashSet::new();
        let mut models = Vec::new();
        for entry in &self.table().providers {
            for model in &entry.models {
                if seen.insert(model.name.to_lowercase()) {
                    models.push(MarketModel {
                        id: provided_model_id(&model.name),
                        name: model.name.clone(),
                        tags: vec!["provider".to_owned()],
                        created_at: 0,
                        owner: "provider".to_owned(),
                        is_deleted: false,
                        model_type: model.model_type,
                    });
                }
            }
        }
        models
    }

    /// Aliases the providers declare: alias → model name.
    pub fn aliases(&self) -> Vec<(String, String)> {
        self.table()
            .providers
            .iter()
            .flat_map(|p| &p.models)
            .flat_map(|m| m.aliases.iter().map(|a| (a.clone(), m.name.clone())))
            .collect()
    }

    /// The upstreams to try for `model`, best first: by priority, equal priorities in a
    /// weighted rotation, cooling providers last (tried only when nothing else is left).
    pub fn plan(&self, model: &ResolvedModel, on_marketplace: bool) -> Vec<Upstream> {
        let table = self.table();
        let mut ranked: Vec<(u32, u32, Upstream)> = Vec::new();
        if on_marketplace {
            ranked.push((
                table.marketplace_priority,
                table.marketplace_weight,
                Upstream::Marketplace,
            ));
        }
        for entry in &table.providers {
            let served = entry
                .models
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(&model.name));
            if let Some(served) = served {
                ranked.push((
                    entry.priority,
                    entry.weight.max(1),
                    Upstream::Provider {
                        name: entry.name.clone(),
                        client: entry.client.clone(),
                        model: served.upstream_name.clone(),
                    },
                ));
            }
        }
        ranked.sort_by_key(|(priority, ..)| *priority);
        let turn = self.turn.fetch_add(1, Relaxed);
        let mut ordered = Vec::with_capacity(ranked.len());
        let mut rest = ranked.as_slice();
        while let Some((priority, ..)) = rest.first() {
            let end = rest.iter().take_while(|(p, ..)| p == priority).count();
            ordered.extend(rotated(&rest[..end], turn));
            rest = &rest[end..];
        }
        let now = Instant::now();
        let cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        let (ready, benched): (Vec<Upstream>, Vec<Upstream>) = ordered
            .into_iter()
            .partition(|u| cooling.get(u.label()).is_none_or(|until| *until <= now));
        ready.into_iter().chain(benched).collect()
    }

    /// `upstream` failed in a way another try would repeat: leave it alone for its
    /// `Retry-After` (at most ten minutes), else the default cooldown.
    pub fn cool(&self, upstream: &Upstream, retry_after: Option<Duration>) {
        if let Upstream::Provider { name, .. } = upstream {
            let pause = retry_after
                .unwrap_or(self.table().default_cooldown)
                .min(MAX_COOLDOWN);
            let until = Instant::now() + pause;
            tracing::warn!(provider = %name, pause_ms = pause.as_millis() as u64, "provider failed; cooling it down");
            self.cooling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), until);
        }
    }
}

/// Equal-priority upstreams in a weighted rotation: the first is chosen in proportion to the
/// weights as `turn` advances, the others follow in their declared order.
fn rotated(group: &[(u32, u32, Upstream)], turn: u64) -> Vec<Upstream> {
    let total: u64 = group.iter().map(|(_, w, _)| u64::from(*w)).sum();
    let mut point = turn % total.max(1);
    let first = group
        .iter()
        .position(|(_, w, _)| {
            let w = u64::from(*w);
            if point < w {
                true
            } else {
                point -= w;
                false
            }
        })
        .unwrap_or(0);
    (0..group.len())
        .map(|i| group[(first + i) % group.len()].2.clone())
        .collect()
}

/// A provider model's id: `0x` and the SHA-256 of its name, so it is stable across restarts
/// and replicas and cannot collide with a chain id by accident.
pub fn provided_model_id(name: &str) -> ModelId {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("morpheus-gateway provider model:{}", name.to_lowercase()).as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    ModelId::parse(&format!("0x{hex}")).expect("64 hex digits")
}

#[cfg(test)]
mod tests;
