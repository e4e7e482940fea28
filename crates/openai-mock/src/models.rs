//! `GET /v1/models` and `GET /v1/models/{id}`.

use serde::Serialize;

use crate::reply::{self, Reply};
use crate::state::Shared;

/// A fixed `created`, so listings are byte-for-byte stable.
const CREATED: u64 = 1_700_000_000;

#[derive(Serialize)]
struct ModelOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<ModelOut<'a>>,
}

fn model<'a>(shared: &'a Shared, id: &'a str) -> ModelOut<'a> {
    ModelOut {
        id,
        object: "model",
        created: CREATED,
        owned_by: &shared.config.name,
    }
}

pub(crate) fn list(shared: &Shared) -> Reply {
    reply::ok(&ListOut {
        object: "list",
        data: shared
            .config
            .models
            .iter()
            .map(|id| model(shared, id))
            .collect(),
    })
}

pub(crate) fn get(shared: &Shared, id: &str) -> Reply {
    if shared.knows_model(id) {
        reply::ok(&model(shared, id))
    } else {
        reply::model_not_found(id)
    }
}
