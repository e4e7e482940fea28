use async_trait::async_trait;

use super::*;
use crate::ports::{ChatReply, MarketplaceError, ProviderCall};

struct Idle;

#[async_trait]
impl Provider for Idle {
    async fn call(&self, _: ProviderCall) -> Result<ChatReply, MarketplaceError> {
        Err(MarketplaceError::Unreachable("idle".to_owned()))
    }
}

fn entry(name: &str, priority: u32, weight: u32, models: &[&str]) -> ProviderEntry {
    ProviderEntry {
        name: name.to_owned(),
        client: Arc::new(Idle),
        priority,
        weight,
        models: models
            .iter()
            .map(|m| ProvidedModel {
                name: (*m).to_owned(),
                upstream_name: format!("{name}/{m}"),
                aliases: vec![],
                model_type: ModelType::Llm,
            })
            .collect(),
    }
}

fn model(name: &str) -> ResolvedModel {
    ResolvedModel {
        id: provided_model_id(name),
        name: name.to_owned(),
        model_type: ModelType::Llm,
    }
}

fn labels(plan: &[Upstream]) -> Vec<&str> {
    plan.iter().map(Upstream::label).collect()
}

#[test]
fn priority_orders_and_only_upstreams_serving_the_model_appear() {
    let upstreams = Upstreams::new(
        vec![
            entry("backup", 9, 1, &["llama"]),
            entry("local", 1, 1, &["llama", "qwen"]),
        ],
        5,
        1,
        DEFAULT_COOLDOWN,
    );
    assert_eq!(
        labels(&upstreams.plan(&model("llama"), true)),
        ["local", "marketplace", "backup"]
    );
    assert_eq!(
        labels(&upstreams.plan(&model("LLAMA"), false)),
        ["local", "backup"]
    );
    assert_eq!(
        labels(&upstreams.plan(&model("qwen"), true)),
        ["local", "marketplace"]
    );
    assert_eq!(
        labels(&upstreams.plan(&model("other"), true)),
        ["marketplace"]
    );
    let Upstream::Provider { model: sent, .. } = &upstreams.plan(&model("qwen"), false)[0] else {
        panic!("a provider first");
    };
    assert_eq!(sent, "local/qwen", "the provider's own name goes upstream");
}

#[test]
fn equal_priorities_share_the_first_place_by_weight() {
    let upstreams = Upstreams::new(
        vec![entry("a", 1, 3, &["m"]), entry("b", 1, 1, &["m"])],
        0,
        1,
        DEFAULT_COOLDOWN,
    );
    let mut first = HashMap::new();
    for _ in 0..400 {
        let plan = upstreams.plan(&model("m"), false);
        assert_eq!(plan.len(), 2);
        *first.entry(plan[0].label().to_owned()).or_insert(0) += 1;
    }
    assert_eq!((first["a"], first["b"]), (300, 100));
}

#[test]
fn a_cooling_provider_goes_last_until_its_pause_ends() {
    let upstreams = Upstreams::new(
        vec![entry("a", 1, 1, &["m"]), entry("b", 2, 1, &["m"])],
        0,
        1,
        DEFAULT_COOLDOWN,
    );
    let plan = upstreams.plan(&model("m"), false);
    upstreams.cool(&plan[0], Some(Duration::from_millis(30)));
    assert_eq!(labels(&upstreams.plan(&model("m"), false)), ["b", "a"]);
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(labels(&upstreams.plan(&model("m"), false)), ["a", "b"]);
    // The marketplace is never benched: its sessions have their own recovery.
    upstreams.cool(&Upstream::Marketplace, None);
    assert!(
        upstreams
            .cooling
            .lock()
            .unwrap()
            .get("marketplace")
            .is_none()
    );
}

#[test]
fn a_reroute_takes_the_new_declaration_and_keeps_cooldowns() {
    let upstreams = Upstreams::new(
        vec![entry("a", 1, 1, &["m"]), entry("b", 2, 1, &["m"])],
        0,
        1,
        DEFAULT_COOLDOWN,
    );
    let plan = upstreams.plan(&model("m"), false);
    upstreams.cool(&plan[0], Some(Duration::from_secs(60)));
    // Read again: `b` first now, `c` new and serving another model too.
    upstreams.reroute(Upstreams::new(
        vec![
            entry("a", 3, 1, &["m"]),
            entry("b", 0, 1, &["m"]),
            entry("c", 1, 1, &["m", "n"]),
        ],
        5,
        1,
        DEFAULT_COOLDOWN,
    ));
    assert_eq!(
        labels(&upstreams.plan(&model("m"), true)),
        ["b", "c", "marketplace", "a"]
    );
    assert_eq!(labels(&upstreams.plan(&model("n"), false)), ["c"]);
    // `a` failed a moment ago: still benched after the re-read.
    upstreams.reroute(Upstreams::new(
        vec![entry("a", 0, 1, &["m"]), entry("b", 1, 1, &["m"])],
        0,
        1,
        DEFAULT_COOLDOWN,
    ));
    assert_eq!(labels(&upstreams.plan(&model("m"), false)), ["b", "a"]);
    upstreams.reroute(Upstreams::marketplace_only());
    assert!(!upstreams.has_providers());
    assert_eq!(labels(&upstreams.plan(&model("m"), true)), ["marketplace"]);
}

#[test]
fn provider_models_are_listed_once_with_stable_ids() {
    let upstreams = Upstreams::new(
        vec![entry("a", 1, 1, &["m", "n"]), entry("b", 1, 1, &["M"])],
        0,
        1,
        DEFAULT_COOLDOWN,
    );
    let models = upstreams.models();
    assert_eq!(
        models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["m", "n"]
    );
    assert_eq!(models[0].id, provided_model_id("M"));
    assert_ne!(models[0].id, models[1].id);
}
