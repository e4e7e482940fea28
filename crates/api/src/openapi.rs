use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document's frame; paths and schemas are collected from the handlers as they are
/// registered (`utoipa-actix-web`), so a route cannot be served without being documented.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Morpheus API Gateway",
        version = "0.1.0",
        description = "OpenAI-compatible API gateway for the Morpheus decentralized inference marketplace."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "Auth", description = "Accounts, tokens, API keys, wallet keys and delegations"),
        (name = "Models", description = "The marketplace's models and bids"),
        (name = "Chat", description = "OpenAI-compatible chat completions (API key)"),
        (name = "Embeddings", description = "OpenAI-compatible embeddings (API key)"),
        (name = "Audio", description = "OpenAI-compatible speech to text and text to speech (API key)"),
        (name = "Chat history", description = "Chats a client stores per user (API key)"),
        (name = "Session", description = "Marketplace sessions of the calling API key"),
        (name = "Automation", description = "Automatic session settings (API key)"),
        (name = "Billing", description = "Credits: balance, ledger, charges, spending, grants"),
        (name = "System", description = "Service information and health"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The access token from /api/v1/auth/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "APIKeyAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "An API key: `Bearer sk-…` or just `sk-…`",
            ))),
        );
        components.add_security_scheme(
            "MetricsToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("MORPHEUS_METRICS_TOKEN, when one is configured"))
                    .build(),
            ),
        );
    }
}
