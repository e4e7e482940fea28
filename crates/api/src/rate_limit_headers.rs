//! The `X-RateLimit-*` headers, as OpenAI sends them: the tightest request and token limit
//! that applied to the request, what is left of it, and when its window resets.

use actix_web::HttpResponseBuilder;
use morpheus_domain::services::{Headroom, LimitStatus};

/// Adds the headers of each limit that applied (none when the request was not limited).
pub fn insert(response: &mut HttpResponseBuilder, status: &LimitStatus) {
    for (kind, headroom) in [("requests", status.requests), ("tokens", status.tokens)] {
        let Some(Headroom {
            limit,
            remaining,
            resets_in,
        }) = headroom
        else {
            continue;
        };
        response.insert_header((format!("x-ratelimit-limit-{kind}"), limit));
        response.insert_header((format!("x-ratelimit-remaining-{kind}"), remaining));
        // OpenAI writes a duration ("6m0s", "1s"); whole seconds are a valid one.
        response.insert_header((
            format!("x-ratelimit-reset-{kind}"),
            format!("{}s", resets_in.as_secs()),
        ));
    }
}
