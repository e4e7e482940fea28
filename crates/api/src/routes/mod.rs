//! Route table. Every handler is registered through `utoipa_actix_web`, which also adds it to
//! the served OpenAPI document.

mod audio;
mod auth;
mod automation;
mod billing;
mod chat;
mod chat_history;
mod embeddings;
mod inference;
mod models;
pub(crate) mod session;
mod system;

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub use audio::remove_stale_spools;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(
        scope("/api/v1/auth")
            .service(auth::register_user::register_user)
            .service(auth::delete_user_account::delete_user_account)
            .service(auth::login::login)
            .service(auth::refresh_token::refresh_token)
            .service(auth::logout::logout)
            .service(auth::change_password::change_password)
            .service(auth::get_current_user::get_current_user)
            .service(auth::create_api_key::create_api_key)
            .service(auth::get_api_keys::get_api_keys)
            .service(auth::get_default_api_key::get_default_api_key)
            .route("/keys/default", actix_web::web::route().to(auth::only_get))
            .service(auth::get_first_api_key::get_first_api_key)
            .route("/keys/first", actix_web::web::route().to(auth::only_get))
            .service(auth::set_default_api_key::set_default_api_key)
            .service(auth::delete_api_key::delete_api_key)
            .service(auth::update_api_key::update_api_key)
            .service(auth::store_private_key::store_private_key)
            .service(auth::get_private_key_status::get_private_key_status)
            .service(auth::delete_private_key::delete_private_key)
            .service(auth::store_delegation::store_delegation)
            .service(auth::get_user_delegations::get_user_delegations)
            .service(auth::get_active_user_delegation::get_active_user_delegation)
            .route(
                "/delegation/active",
                actix_web::web::route().to(auth::only_get),
            )
            .service(auth::delete_delegation::delete_delegation),
    )
    .service(
        scope("/api/v1/automation")
            .service(automation::get_automation_settings::get_automation_settings)
            .service(automation::update_automation_settings::update_automation_settings),
    )
    .service(
        scope("/api/v1/billing")
            .service(billing::get_balance::get_balance)
            .service(billing::list_transactions::list_transactions)
            .service(billing::get_usage::get_usage)
            .service(billing::get_spending::get_spending)
            .service(billing::adjust_credits::adjust_credits),
    )
    .service(
        scope("/api/v1/models")
            .service(models::list_models::list_models)
            .service(models::list_models::list_models_slash)
            .service(models::get_all_models::get_all_models)
            .service(models::get_rated_bids::get_rated_bids),
    )
    .service(
        scope("/api/v1/chat")
            .wrap(actix_web::middleware::from_fn(crate::chat_admission::admit))
            .service(chat::create_chat_completion::create_chat_completion),
    )
    .service(
        scope("/api/v1/embeddings")
            .wrap(actix_web::middleware::from_fn(crate::chat_admission::admit))
            .service(embeddings::create_embeddings::create_embeddings),
    )
    .service(
        scope("/api/v1/audio")
            .wrap(actix_web::middleware::from_fn(crate::chat_admission::admit))
            .service(audio::create_speech::create_speech)
            .service(audio::create_transcription::create_transcription),
    )
    .service(
        scope("/api/v1/chat-history")
            .service(chat_history::create_chat::create_chat)
            .service(chat_history::list_chats::list_chats)
            .service(chat_history::get_chat::get_chat)
            .service(chat_history::update_chat::update_chat)
            .service(chat_history::delete_chat::delete_chat)
            .service(chat_history::create_message::create_message)
            .service(chat_history::list_messages::list_messages)
            .service(chat_history::delete_message::delete_message),
    )
    .service(
        scope("/api/v1/session")
            .service(session::approve_spending::approve_spending)
            .service(session::create_bid_session::create_bid_session)
            .service(session::create_model_session::create_model_session)
            .service(session::close_session::close_session)
            .service(session::ping_session::ping_session),
    )
    .service(system::root::root)
    .service(system::health_check::health_check)
    .service(system::readiness_check::readiness_check)
    .service(system::get_metrics::get_metrics);
}

/// The separate metrics listener (`MORPHEUS_METRICS_BIND`): `GET /metrics` only, without a
/// token (the listener's address is the access control).
pub fn metrics_only(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.route(
        "/metrics",
        actix_web::web::get().to(|state: actix_web::web::Data<crate::AppState>| async move {
            system::get_metrics::render(&state).await
        }),
    );
}
