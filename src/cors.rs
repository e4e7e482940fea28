//! Browser clients on other origins (CORS): an explicit list of origins from the settings.
//!
//! The API authenticates with `Authorization` (access tokens and API keys), never cookies, so
//! credentials mode is off unless the operator turns it on, and the `*` origin is refused
//! together with it: a page on any site must not be able to make a browser send its cookies.
//! Requests from other origins are served as before, without `Access-Control-Allow-Origin`:
//! the browser, not the gateway, withholds the answer from the page (and non-browser clients
//! never send `Origin` anyway).

use std::time::Duration;

use actix_cors::Cors;
use actix_web::http::{Method, header};
use anyhow::bail;

use crate::configuration::Settings;

/// What answers may show a page besides the CORS-safelisted headers: the rate-limit headers,
/// `Retry-After` and the request id (what an SDK reads to back off or to report).
const EXPOSED: [&str; 10] = [
    "retry-after",
    "x-request-id",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-process-time",
    "openai-processing-ms",
];

/// The origins of the setting's comma-separated list, trimmed, without a trailing `/`.
pub fn origins(list: &str) -> Vec<&str> {
    list.split(',')
        .map(|origin| origin.trim().trim_end_matches('/'))
        .filter(|origin| !origin.is_empty())
        .collect()
}

/// The CORS policy of the settings; `None` when no origin is allowed.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    credentials: bool,
    max_age: Duration,
}

impl CorsPolicy {
    /// # Errors
    /// The `*` origin together with credentials.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(list) = &settings.cors_allowed_origins else {
            return Ok(None);
        };
        let origins = origins(list);
        let any_origin = origins.contains(&"*");
        if any_origin && settings.cors_allow_credentials {
            bail!(
                "MORPHEUS_CORS_ALLOWED_ORIGINS=* with MORPHEUS_CORS_ALLOW_CREDENTIALS=true would \
                 let a page on any site use its visitors' credentials: list the origins instead"
            );
        }
        Ok(Some(Self {
            any_origin,
            origins: origins.into_iter().map(str::to_owned).collect(),
            credentials: settings.cors_allow_credentials,
            max_age: Duration::from_secs(settings.cors_max_age_seconds),
        }))
    }

    /// The middleware (one per HTTP worker).
    pub fn middleware(&self) -> Cors {
        let mut cors = Cors::default()
            .allowed_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            // The OpenAI SDKs send headers of their own (`x-stainless-*`, `openai-*`); any
            // header a page asks for is allowed, since none of them grants anything.
            .allow_any_header()
            .expose_headers(EXPOSED.map(header::HeaderName::from_static))
            .max_age(usize::try_from(self.max_age.as_secs()).ok())
            // Another origin's request is served, only without the CORS headers.
            .block_on_origin_mismatch(false);
        if self.any_origin {
            cors = cors.allow_any_origin().send_wildcard();
        } else {
            for origin in &self.origins {
                cors = cors.allowed_origin(origin);
            }
        }
        if self.credentials {
            cors = cors.supports_credentials();
        }
        cors
    }
}
