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
    /// Models the operator's providers serve, listed beside the marketplace's (a model both
    /// have is listed once, as the marketplace's).
    pub provided: Vec<MarketModel>,
}

/// A model a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub id: ModelId,
    pub name: String,
    pub model_type: ModelType,
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
    /// The model exists but does another job (a chat request to an embedding model, …).
    #[error(
        "The model '{}' is of type {}; this route needs a model of type {}",
        .0.resolved, .0.model_type, .0.route
    )]
    TypeMismatch(Box<TypeMismatch>),
}

/// What a request asked for and what it found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    pub requested: String,
    pub resolved: String,
    pub resolved_id: ModelId,
    pub model_type: ModelType,
    /// The type the route needs.
    pub route: ModelType,
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
    /// The default model for chat (LLM), and for each other type.
    defaults: HashMap<ModelType, usize>,
    /// What the marketplace listed, before the providers' models were added: rebuilt from when
    /// the providers change.
    from_market: Vec<MarketModel>,
}

impl CatalogueSnapshot {
    pub fn is_loaded(&self) -> bool {
        self.loaded_at.is_some()
    }
}

pub struct ModelCatalogue {
    options: RwLock<CatalogueOptions>,
    current: RwLock<Arc<CatalogueSnapshot>>,
}

impl ModelCatalogue {
    pub fn new(options: CatalogueOptions) -> Self {
        Self {
            options: RwLock::new(options),
            current: RwLock::new(Arc::new(CatalogueSnapshot::default())),
        }
    }

    /// The providers' models and the aliases in force changed (the operator's files were read
    /// again): a loaded catalogue is rebuilt at once from the marketplace's last list.
    pub fn set_provided(&self, provided: Vec<MarketModel>, aliases: Vec<(String, String)>) {
        {
            let mut options = self
                .options
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            options.provided = provided;
            options.aliases = aliases;
        }
        let current = self.snapshot();
        if let Some(at) = current.loaded_at {
            self.replace(current.from_market.clone(), current.all.clone(), at);
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
        from_market: Vec<MarketModel>,
        all: Vec<MarketModel>,
        at: DateTime<Utc>,
    ) -> CatalogueSnapshot {
        let options = self
            .options
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut listed = from_market.clone();
        for model in &options.provided {
            if !listed
                .iter()
                .any(|m| m.name.eq_ignore_ascii_case(&model.name))
            {
                listed.push(model.clone());
            }
        }
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
        for (alias, target) in &options.aliases {
            if let Some(&i) = lookup.get(&target.to_lowercase()) {
                lookup.entry(alias.to_lowercase()).or_insert(i);
            }
        }
        let mut defaults = HashMap::new();
        for route in [
            ModelType::Llm,
            ModelType::Embedding,
            ModelType::Stt,
            ModelType::Tts,
        ] {
            if let Some(i) = Self::default_for(&options, &listed, &lookup, route) {
                defaults.insert(route, i);
            }
        }
        CatalogueSnapshot {
            listed,
            all,
            loaded_at: Some(at),
            lookup,
            defaults,
            from_market,
        }
    }

    /// Chat's default is the configured model, else the one tagged `Default`, else the first;
    /// among the models that may chat. The other types have no setting: the model of that
    /// very type tagged `Default`, else the first of the type (a model of unknown type is
    /// nobody's default but chat's).
    fn default_for(
        options: &CatalogueOptions,
        listed: &[MarketModel],
        lookup: &HashMap<String, usize>,
        route: ModelType,
    ) -> Option<usize> {
        let tagged_default =
            |m: &MarketModel| m.tags.iter().any(|t| t.eq_ignore_ascii_case("default"));
        if route == ModelType::Llm {
            return match &options.default_model {
                Some(name) => lookup.get(&name.to_lowercase()).copied(),
                None => {
                    let chat = |m: &&MarketModel| m.model_type.serves(route);
                    let first_default = listed.iter().position(|m| chat(&m) && tagged_default(m));
                    first_default.or_else(|| listed.iter().position(|m| chat(&m)))
                }
            };
        }
        let of_type = |m: &MarketModel| m.model_type == route;
        listed
            .iter()
            .position(|m| of_type(m) && tagged_default(m))
            .or_else(|| listed.iter().position(of_type))
    }

    /// A name, an alias or a `0x` id, of any type; `None` or an empty string means chat's
    /// default model.
    pub fn resolve(&self, requested: Option<&str>) -> Result<ResolvedModel, ResolveModelError> {
        self.find(requested, ModelType::Llm)
    }

    /// Like [`resolve`](Self::resolve) for a route serving `route`'s type: no model means
    /// that type's default, and a model of another known type is refused.
    pub fn resolve_for(
        &self,
        requested: Option<&str>,
        route: ModelType,
    ) -> Result<ResolvedModel, ResolveModelError> {
        let model = self.find(requested, route)?;
        if model.model_type.serves(route) {
            return Ok(model);
        }
        Err(ResolveModelError::TypeMismatch(Box::new(TypeMismatch {
            requested: requested.unwrap_or_default().trim().to_owned(),
            resolved: model.name,
            resolved_id: model.id,
            model_type: model.model_type,
            route,
        })))
    }

    fn find(
        &self,
        requested: Option<&str>,
        default_of: ModelType,
    ) -> Result<ResolvedModel, ResolveModelError> {
        let snapshot = self.snapshot();
        if !snapshot.is_loaded() {
            return Err(ResolveModelError::NotLoaded);
        }
        let index = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            None => *snapshot
                .defaults
                .get(&default_of)
                .ok_or(ResolveModelError::NoDefault)?,
            Some(name) => *snapshot
                .lookup
                .get(&name.to_lowercase())
                .ok_or_else(|| ResolveModelError::Unknown(name.to_owned()))?,
        };
        let model = &snapshot.listed[index];
        Ok(ResolvedModel {
            id: model.id.clone(),
            name: model.name.clone(),
            model_type: model.model_type,
        })
    }

    /// A session's model with its listed name (empty when the model is no longer listed).
    pub fn named(&self, id: &ModelId) -> ResolvedModel {
        let snapshot = self.snapshot();
        let listed = snapshot
            .lookup
            .get(id.as_str())
            .map(|&index| &snapshot.listed[index]);
        ResolvedModel {
            id: id.clone(),
            name: listed.map(|m| m.name.clone()).unwrap_or_default(),
            model_type: listed.map(|m| m.model_type).unwrap_or_default(),
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
            model_type: ModelType::from_tags(tags),
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
            provided: Vec::new(),
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
            provided: Vec::new(),
        });
        assert_eq!(configured.resolve(None).unwrap().name, "llama-3.3-70b");
        let missing = loaded(CatalogueOptions {
            default_model: Some("nope".into()),
            aliases: vec![],
            provided: Vec::new(),
        });
        assert_eq!(missing.resolve(None), Err(ResolveModelError::NoDefault));
    }

    #[test]
    fn each_route_has_its_own_default_and_refuses_other_types() {
        let catalogue = ModelCatalogue::new(CatalogueOptions::default());
        let models = vec![
            model(1, "bge-m3", &["Embedding", "Default"], false),
            model(2, "kokoro", &["TTS"], false),
            model(3, "llama", &["LLM"], false),
            model(4, "mistral", &["Mistral", "Default"], false),
            model(5, "whisper", &["STT"], false),
        ];
        catalogue.replace(models.clone(), models, Utc::now());
        let default = |route| catalogue.resolve_for(None, route).unwrap().name;
        // The embedding model's Default tag does not make it chat's default.
        assert_eq!(default(ModelType::Llm), "mistral");
        assert_eq!(default(ModelType::Embedding), "bge-m3");
        assert_eq!(default(ModelType::Tts), "kokoro");
        assert_eq!(default(ModelType::Stt), "whisper");
        assert_eq!(catalogue.resolve(None).unwrap().name, "mistral");

        let Err(ResolveModelError::TypeMismatch(mismatch)) =
            catalogue.resolve_for(Some(" BGE-M3 "), ModelType::Llm)
        else {
            panic!("a chat request to an embedding model must be refused");
        };
        assert_eq!(mismatch.requested, "BGE-M3");
        assert_eq!(mismatch.resolved, "bge-m3");
        assert_eq!(
            (mismatch.model_type, mismatch.route),
            (ModelType::Embedding, ModelType::Llm)
        );
        assert!(
            catalogue
                .resolve_for(Some("llama"), ModelType::Embedding)
                .is_err()
        );
        // Untyped models serve any route; sessions may be opened for any model.
        assert_eq!(
            catalogue
                .resolve_for(Some("mistral"), ModelType::Embedding)
                .unwrap()
                .model_type,
            ModelType::Unknown
        );
        assert_eq!(
            catalogue.resolve(Some("whisper")).unwrap().model_type,
            ModelType::Stt
        );
    }

    #[test]
    fn a_type_without_models_has_no_default() {
        let catalogue = loaded(CatalogueOptions::default());
        assert_eq!(
            catalogue.resolve_for(None, ModelType::Tts),
            Err(ResolveModelError::NoDefault)
        );
    }

    #[test]
    fn changed_providers_take_effect_at_once_and_survive_the_next_refresh() {
        let catalogue = loaded(CatalogueOptions::default());
        let local = MarketModel {
            owner: "provider".to_owned(),
            ..model(9, "local-llama", &[], false)
        };
        catalogue.set_provided(
            vec![local.clone()],
            vec![("ll".to_owned(), "local-llama".to_owned())],
        );
        assert_eq!(catalogue.resolve(Some("LL")).unwrap().name, "local-llama");
        assert_eq!(catalogue.snapshot().listed.len(), 3);
        // The marketplace's next list keeps the providers' models beside it.
        let refreshed = vec![model(1, "llama-3.3-70b", &[], false)];
        catalogue.replace(refreshed.clone(), refreshed, Utc::now());
        assert_eq!(
            catalogue.resolve(Some("ll")).unwrap().id,
            local.id,
            "still there"
        );
        assert_eq!(catalogue.snapshot().listed.len(), 2);
        // Declared no more: gone, and the marketplace's models untouched.
        catalogue.set_provided(Vec::new(), Vec::new());
        assert_eq!(
            catalogue.resolve(Some("local-llama")),
            Err(ResolveModelError::Unknown("local-llama".to_owned()))
        );
        assert_eq!(catalogue.resolve(None).unwrap().name, "llama-3.3-70b");
    }

    #[test]
    fn providers_set_before_the_first_load_wait_for_it() {
        let catalogue = ModelCatalogue::new(CatalogueOptions::default());
        catalogue.set_provided(vec![model(9, "local-llama", &[], false)], Vec::new());
        assert_eq!(catalogue.resolve(None), Err(ResolveModelError::NotLoaded));
    }
}
