//! Marketplace failures → HTTP status and message: the one table both error shapes (the
//! `{"detail"}` of the session routes and the OpenAI `{"error"}` of chat) are built from.

use std::time::Duration;

use actix_web::http::StatusCode;
use morpheus_domain::ports::{MarketplaceError, ProviderFault, SessionGone, TimeoutPhase};

/// A classified marketplace failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub status: StatusCode,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// A stable machine-readable code.
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl UpstreamFailure {
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
    }
}

/// What to tell an operator who has not configured a proxy-router.
pub const NOT_CONFIGURED: &str = "No proxy-router is configured: set MORPHEUS_PROXY_ROUTER_URL \
     (and MORPHEUS_PROXY_ROUTER_USER / MORPHEUS_PROXY_ROUTER_PASSWORD), or run \
     `morpheus-gateway serve --simulate-marketplace` for a local demo";

impl From<&MarketplaceError> for UpstreamFailure {
    fn from(error: &MarketplaceError) -> Self {
        let failure = |status, kind, code, message: String| UpstreamFailure {
            status,
            kind,
            code,
            message,
            retry_after: None,
        };
        match error {
            MarketplaceError::NotConfigured => failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "upstream_not_configured",
                NOT_CONFIGURED.to_owned(),
            ),
            MarketplaceError::Unreachable(_) => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_unreachable",
                "The marketplace proxy-router cannot be reached".to_owned(),
            ),
            MarketplaceError::Timeout(phase) => failure(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "upstream_timeout",
                match phase {
                    TimeoutPhase::Connect => "Connecting to the marketplace proxy-router timed out",
                    TimeoutPhase::FirstByte | TimeoutPhase::Total => {
                        "The marketplace proxy-router did not answer in time"
                    }
                    TimeoutPhase::Idle => "The marketplace proxy-router stopped sending",
                }
                .to_owned(),
            ),
            // Our own credentials: an operator problem. A 401 would make SDKs tell the client
            // its API key is wrong.
            MarketplaceError::Unauthorized => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_auth_failed",
                "The marketplace proxy-router refused the gateway's credentials".to_owned(),
            ),
            // The gateway manages sessions and renews a gone one once; if the marketplace
            // still says so, the fault is upstream, not in the client's request.
            MarketplaceError::SessionGone(SessionGone::Expired) => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_session_expired",
                "The marketplace reports the session as expired".to_owned(),
            ),
            MarketplaceError::SessionGone(SessionGone::NotFound) => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_session_not_found",
                "The marketplace does not know the session".to_owned(),
            ),
            MarketplaceError::SessionGone(SessionGone::Unusable) => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "provider_unavailable",
                "The session's provider cannot serve it any more".to_owned(),
            ),
            // The node's own texts stay in our log (`From<MarketplaceError> for ApiError`):
            // they name hosts, wallets, contracts and Go internals, none of it the client's.
            MarketplaceError::Rejected {
                status,
                retry_after,
                ..
            } => match *status {
                400 | 422 => failure(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "upstream_rejected",
                    "The marketplace proxy-router refused the request".to_owned(),
                ),
                429 => UpstreamFailure {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    kind: "rate_limit_error",
                    code: "upstream_rate_limited",
                    message: "The marketplace proxy-router is rate limiting; retry later"
                        .to_owned(),
                    retry_after: *retry_after,
                },
                _ => failure(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "upstream_error",
                    "The marketplace proxy-router failed".to_owned(),
                ),
            },
            // The provider's own model error is the one upstream text a client sees, and only
            // sanitised and capped (upstream's `sanitize`), when it is about the request.
            MarketplaceError::Provider {
                fault,
                message,
                retry_after,
            } => match fault {
                ProviderFault::RateLimited => UpstreamFailure {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    kind: "rate_limit_error",
                    code: "provider_rate_limited",
                    message: format!("The provider is rate limiting: {message}"),
                    retry_after: *retry_after,
                },
                ProviderFault::InvalidRequest => failure(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "provider_rejected",
                    format!("The provider refused the request: {message}"),
                ),
                ProviderFault::Unavailable => failure(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "provider_error",
                    "The provider could not serve the request".to_owned(),
                ),
            },
            MarketplaceError::InvalidResponse(_) => failure(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_invalid_response",
                "The marketplace proxy-router sent an unusable answer".to_owned(),
            ),
        }
    }
}

impl From<MarketplaceError> for super::ApiError {
    fn from(error: MarketplaceError) -> Self {
        tracing::warn!(%error, "marketplace call failed");
        super::ApiError::Upstream(UpstreamFailure::from(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(fault: ProviderFault) -> MarketplaceError {
        MarketplaceError::Provider {
            fault,
            message: "the provider's words".into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_a_providers_own_words_about_the_request_reach_the_client() {
        for status in [400, 422, 429, 500, 503] {
            let failure = UpstreamFailure::from(&MarketplaceError::Rejected {
                status,
                message: "dial tcp 10.1.2.3:443: node internals".into(),
                retry_after: None,
            });
            assert!(!failure.message.contains("internals"), "{failure:?}");
        }
        let shown = |fault| UpstreamFailure::from(&provider(fault)).message;
        assert!(shown(ProviderFault::RateLimited).contains("the provider's words"));
        assert!(shown(ProviderFault::InvalidRequest).contains("the provider's words"));
        assert!(!shown(ProviderFault::Unavailable).contains("the provider's words"));
    }

    #[test]
    fn every_failure_has_a_deliberate_status() {
        let cases = [
            (MarketplaceError::NotConfigured, 503),
            (MarketplaceError::Unreachable("refused".into()), 502),
            (MarketplaceError::Timeout(TimeoutPhase::FirstByte), 504),
            (MarketplaceError::Unauthorized, 502),
            (MarketplaceError::SessionGone(SessionGone::NotFound), 502),
            (MarketplaceError::SessionGone(SessionGone::Expired), 502),
            (MarketplaceError::SessionGone(SessionGone::Unusable), 502),
            (
                MarketplaceError::Rejected {
                    status: 400,
                    message: "bad".into(),
                    retry_after: None,
                },
                400,
            ),
            (
                MarketplaceError::Rejected {
                    status: 429,
                    message: "slow".into(),
                    retry_after: Some(Duration::from_millis(1200)),
                },
                429,
            ),
            (
                MarketplaceError::Rejected {
                    status: 500,
                    message: "boom".into(),
                    retry_after: None,
                },
                502,
            ),
            (MarketplaceError::InvalidResponse("html".into()), 502),
            (provider(ProviderFault::RateLimited), 429),
            (provider(ProviderFault::InvalidRequest), 400),
            (provider(ProviderFault::Unavailable), 502),
        ];
        for (error, status) in cases {
            assert_eq!(
                UpstreamFailure::from(&error).status.as_u16(),
                status,
                "{error:?}"
            );
        }
        let limited = UpstreamFailure::from(&MarketplaceError::Rejected {
            status: 429,
            message: "slow".into(),
            retry_after: Some(Duration::from_millis(1200)),
        });
        assert_eq!(limited.retry_after_secs(), Some(2));
    }
}
