//! Browser clients on other origins: preflights and answers for the listed origins only.

use reqwest::{Method, Response};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PAGE: &str = "https://app.example.com";

async fn preflight(app: &TestApp, origin: &str, path: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-stainless-os",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_listed_origin_gets_a_cacheable_preflight_and_answers_it_may_read() {
    let app = spawn_app_with(|s| {
        s.cors_allowed_origins = Some(format!("{PAGE}, http://localhost:3000/"));
    })
    .await;
    for origin in [PAGE, "http://localhost:3000"] {
        let r = preflight(&app, origin, "/api/v1/chat/completions").await;
        assert_eq!(r.status(), 200, "{origin}");
        assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(&r, "access-control-max-age"), Some("86400"));
        let methods = header(&r, "access-control-allow-methods").unwrap();
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{methods}"
        );
        let headers = header(&r, "access-control-allow-headers").unwrap();
        assert!(headers.contains("authorization"), "{headers}");
        assert!(
            headers.contains("x-stainless-os"),
            "the SDK's own headers: {headers}"
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), None);
    }
    // The page logs in (a JSON POST: preflighted, then sent with its Origin) and reads the
    // answer, its request id and the rate-limit headers it may back off on.
    let user = app.seed_user().await;
    let r = app
        .client
        .get(app.url("/api/v1/auth/keys"))
        .header("Origin", PAGE)
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));
    assert!(
        header(&r, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
        "a cache must not serve one origin's answer to another: {:?}",
        r.headers()
    );
    let exposed = header(&r, "access-control-expose-headers").unwrap();
    for name in [
        "x-request-id",
        "retry-after",
        "x-ratelimit-remaining-requests",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test]
async fn another_origin_is_served_without_the_headers_that_would_let_its_page_read() {
    let app = spawn_app_with(|s| s.cors_allowed_origins = Some(PAGE.to_owned())).await;
    let r = preflight(&app, "https://evil.example", "/api/v1/chat/completions").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_ne!(
        r.status(),
        200,
        "the preflight fails, so the browser never sends the request"
    );
    // A simple request (no preflight) is answered, but the browser withholds it from the page.
    let r = app
        .client
        .get(app.url("/health"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // Same-origin and non-browser clients are not affected.
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn without_the_setting_no_origin_is_allowed() {
    let app = spawn_app().await;
    let r = preflight(&app, PAGE, "/api/v1/chat/completions").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = app
        .client
        .get(app.url("/health"))
        .header("Origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn credentials_are_sent_only_to_listed_origins_and_never_with_the_wildcard() {
    let app = spawn_app_with(|s| {
        s.cors_allowed_origins = Some(PAGE.to_owned());
        s.cors_allow_credentials = true;
        s.cors_max_age_seconds = 600;
    })
    .await;
    let r = preflight(&app, PAGE, "/api/v1/auth/login").await;
    assert_eq!(header(&r, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));

    // Any origin: allowed without credentials, as `*` (never an echo of the caller).
    let open = spawn_app_with(|s| s.cors_allowed_origins = Some("*".to_owned())).await;
    let r = preflight(&open, "https://anyone.example", "/api/v1/models").await;
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    // Both together: the gateway does not start.
    let mut settings = app.settings.clone();
    settings.cors_allowed_origins = Some("*".to_owned());
    settings.cors_allow_credentials = true;
    let error = morpheus_gateway::cors::CorsPolicy::from_settings(&settings).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("MORPHEUS_CORS_ALLOW_CREDENTIALS"),
        "{error}"
    );
}
