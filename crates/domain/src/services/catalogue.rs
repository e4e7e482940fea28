//! The model catalogue: the marketplace's models held in memory, refreshed in the background,
//! so listing and resolving a model never waits for the proxy-router.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::model::*;

/// How the operator shapes model resolution.
#[derive(Debug, Clone, Default)]
pub struct CatalogueOptions {
    /// The model used when a request names none: a name or a `0x` id. When unset, the model
    /// tagged `Default`, else the first by name.
    pub default_model: Option<String>,
    /// Extra names: alias → model name or `0x` id (case-insensitive).
    pub aliases: Vec<(String, String)>,
}

/// A model a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub id: ModelId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveModelError {
    /// Nothing has been loaded from the marketplace yet.
    #[error("the model catalogue has not been loaded yet")]
    NotLoaded,
    /// Not a name, alias or id of a listed model. The original gateway silently switched to
    /// the default model here; a client asking for a model must know it did not get it.
    #[error("The model '{0}' does not exist")]
    Unknown(String),
    /// The request named no model and there is no default.
    #[error("no model was given and no default model is available")]
    NoDefault,
}

/// One loaded state of the catalogue; replaced as a whole on refresh.
#[derive(Debug, Default)]
pub struct CatalogueSnapshot {
    /// The models requests may use (not deleted), by name.
    pub listed: Vec<MarketModel>,
    /// Every model on chain that is not deleted (`/models/allmodels`).
    pub all: Vec<MarketModel>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Lowercase name, alias or id → index into `listed`.
    lookup: HashMap<String, usize>,
    default: Option<usize>,
}

impl CatalogueSnapshot {
    pub fn is_loaded(&self) -> bool {
        self.loaded_at.is_some()
    }
}

pub struct ModelCatalogue {
    options: CatalogueOptions,
    current: RwLock<Arc<CatalogueSnapshot>>,
}

impl ModelCatalogue {
    pub fn new(options: CatalogueOptions) -> Self {
        Self {
            options,
            current: RwLock::new(Arc::new(CatalogueSnapshot::default())),
        }
    }

    pub fn snapshot(&self) -> Arc<CatalogueSnapshot> {
        // A poisoned lock only means a writer panicked between two whole-value swaps; the
        // value inside is still a complete snapshot.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Installs a fresh list. `listed` is what requests may resolve to (the operator's feed
    /// when one is configured, else the chain's list); `all` is the chain's list.
    pub fn replace(&self, listed: Vec<MarketModel>, all: Vec<MarketModel>, at: DateTime<Utc>) {
        let snapshot = Arc::new(self.build(listed, all, at));
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
    }

    fn build(
        &self,
        listed: Vec<MarketModel>,
        all: Vec<MarketModel>,
        at: DateTime<Utc>,
    ) -> CatalogueSnapshot {
        let listed = visible(listed);
        let all = visible(all);
        let mut lookup = HashMap::new();
        // Ids first, then names: an id always wins, and of two models with one name the
        // first listed keeps it.
        for (i, model) in listed.iter().enumerate() {
            lookup.entry(model.id.as_str().to_owned()).or_insert(i);
        }
        for (i, model) in listed.iter().enumerate() {
            lookup.entry(model.name.to_lowercase()).or_insert(i);
        }
        for (alias, target) in &self.options.aliases {
            if let Some(&i) = lookup.get(&target.to_lowercase()) {
                lookup.entry(alias.to_lowercase()).or_insert(i);
            }
        }
        let default = match &self.options.default_model {
            Some(name) => lookup.get(&name.to_lowercase()).copied(),
            None => listed
                .iter()
                .position(|m| m.tags.iter().any(|t| t.eq_ignore_ascii_case("default")))
                .or(if listed.is_empty() { None } else { Some(0) }),
        };
        CatalogueSnapshot {
            listed,
            all,
            loaded_at: Some(at),
            lookup,
            default,
        }
    }

    /// A name, an alias or a `0x` id; `None` or an empty string means the default model.
    pub fn resolve(&self, requested: Option<&str>) -> Result<ResolvedModel, ResolveModelError> {
        let snapshot = self.snapshot();
        if !snapshot.is_loaded() {
            return Err(ResolveModelError::NotLoaded);
        }
        let index = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            None => snapshot.default.ok_or(ResolveModelError::NoDefault)?,
            Some(name) => *snapshot
                .lookup
                .get(&name.to_lowercase())
                .ok_or_else(|| ResolveModelError::Unknown(name.to_owned()))?,
        };
        let model = &snapshot.listed[index];
        Ok(ResolvedModel {
            id: model.id.clone(),
            name: model.name.clone(),
        })
    }

    /// A session's model with its listed name (empty when the model is no longer listed).
    pub fn named(&self, id: &ModelId) -> ResolvedModel {
        let snapshot = self.snapshot();
        let name = snapshot
            .lookup
            .get(id.as_str())
            .map(|&index| snapshot.listed[index].name.clone())
            .unwrap_or_default();
        ResolvedModel {
            id: id.clone(),
            name,
        }
    }
}

/// Deleted models are never offered; the rest are sorted by name for stable listings.
fn visible(mut models: Vec<MarketModel>) -> Vec<MarketModel> {
    models.retain(|m| !m.is_deleted);
    models.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(n: u8, name: &str, tags: &[&str], deleted: bool) -> MarketModel {
        MarketModel {
            id: ModelId::parse(&format!("0x{}", format!("{n:02x}").repeat(32))).unwrap(),
            name: name.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            created_at: 0,
            owner: String::new(),
            is_deleted: deleted,
        }
    }

    fn loaded(options: CatalogueOptions) -> ModelCatalogue {
        let catalogue = ModelCatalogue::new(options);
        let models = vec![
            model(1, "llama-3.3-70b", &[], false),
            model(2, "mistral-31-24b", &["Mistral", "Default"], false),
            model(3, "retired", &[], true),
        ];
        catalogue.replace(models.clone(), models, Utc::now());
        catalogue
    }

    #[test]
    fn nothing_resolves_before_the_first_load() {
        let catalogue = ModelCatalogue::new(CatalogueOptions::default());
        assert_eq!(catalogue.resolve(None), Err(ResolveModelError::NotLoaded));
    }

    #[test]
    fn names_ids_and_aliases_resolve_case_insensitively() {
        let catalogue = loaded(CatalogueOptions {
            default_model: None,
            aliases: vec![("gpt-4o".into(), "LLAMA-3.3-70B".into())],
        });
        let llama = catalogue.resolve(Some("llama-3.3-70b")).unwrap();
        assert_eq!(catalogue.resolve(Some("Llama-3.3-70B")).unwrap(), llama);
        assert_eq!(catalogue.resolve(Some(llama.id.as_str())).unwrap(), llama);
        assert_eq!(
            catalogue
                .resolve(Some(&llama.id.as_str().to_uppercase().replace("0X", "0x")))
                .unwrap(),
            llama
        );
        assert_eq!(catalogue.resolve(Some("GPT-4o")).unwrap(), llama);
    }

    #[test]
    fn unknown_and_deleted_models_are_errors_not_the_default() {
        let catalogue = loaded(CatalogueOptions::default());
        assert_eq!(
            catalogue.resolve(Some("gpt-3.5-turbo")),
            Err(ResolveModelError::Unknown("gpt-3.5-turbo".into()))
        );
        assert!(matches!(
            catalogue.resolve(Some("retired")),
            Err(ResolveModelError::Unknown(_))
        ));
        assert_eq!(catalogue.snapshot().listed.len(), 2);
        assert_eq!(catalogue.snapshot().all.len(), 2);
    }

    #[test]
    fn the_default_is_configured_or_tagged() {
        let tagged = loaded(CatalogueOptions::default());
        assert_eq!(tagged.resolve(None).unwrap().name, "mistral-31-24b");
        assert_eq!(tagged.resolve(Some("  ")).unwrap().name, "mistral-31-24b");
        let configured = loaded(CatalogueOptions {
            default_model: Some("llama-3.3-70b".into()),
            aliases: vec![],
        });
        assert_eq!(configured.resolve(None).unwrap().name, "llama-3.3-70b");
        let missing = loaded(CatalogueOptions {
            default_model: Some("nope".into()),
            aliases: vec![],
        });
        assert_eq!(missing.resolve(None), Err(ResolveModelError::NoDefault));
    }
}
