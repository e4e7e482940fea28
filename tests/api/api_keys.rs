//! API keys: format, storage, listing, revocation, binding and ownership (A6, B1, B2).

use morpheus_domain::{ApiKeySecret, KeyPrefix};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_body, spawn_app, spawn_app_with};

async fn settings_with_key(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/automation/settings"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_key_is_shown_once_and_stored_only_as_a_digest() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let created = app.create_key(&user.access, "laptop").await;
    let key = created["key"].as_str().unwrap();
    let prefix = created["key_prefix"].as_str().unwrap();
    assert_eq!(created["name"], "laptop");
    assert!(key.starts_with("sk-") && key.len() >= 9 + 1 + 32, "{key}");
    assert_eq!(&key[..9], prefix);
    assert_eq!(&key[9..10], ".");
    assert!(key[10..].chars().all(|c| c.is_ascii_alphanumeric()));

    let list: Value = app.get_json("/api/v1/auth/keys", &user.access).await;
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let text = list.to_string();
    assert!(!text.contains(&key[10..]), "the list leaks the secret");
    for k in listed {
        let mut fields: Vec<_> = k.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "allowed_models",
                "budgets",
                "created_at",
                "expires_at",
                "id",
                "is_active",
                "is_default",
                "key_prefix",
                "last_used_at",
                "name",
                "rpm",
                "stream_continuation",
                "tpm"
            ]
        );
    }

    // Neither the key nor its secret part is anywhere in the database.
    let dump = app.dump_table("api_keys");
    assert!(dump.contains(prefix));
    assert!(!dump.contains(&key[10..]) && !dump.contains(key));
}

#[tokio::test]
async fn keys_work_with_or_without_bearer_and_record_their_last_use() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    assert_eq!(
        settings_with_key(&app, &format!("Bearer {}", user.api_key))
            .await
            .status(),
        200
    );
    assert_eq!(settings_with_key(&app, &user.api_key).await.status(), 200);
    let list: Value = app.get_json("/api/v1/auth/keys", &user.access).await;
    let first_use = list[0]["last_used_at"].clone();
    assert!(first_use.is_string(), "{list}");

    // Within a minute further uses do not rewrite it: a busy key is not a write per request.
    for _ in 0..5 {
        assert_eq!(settings_with_key(&app, &user.api_key).await.status(), 200);
    }
    let list: Value = app.get_json("/api/v1/auth/keys", &user.access).await;
    assert_eq!(list[0]["last_used_at"], first_use);
}

#[tokio::test]
async fn only_the_whole_key_authenticates() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let key = &user.api_key;
    let prefix = &key[..9];
    let mut last_changed = key.clone();
    let last = last_changed.pop().unwrap();
    last_changed.push(if last == 'a' { 'b' } else { 'a' });
    for (name, candidate, detail) in [
        ("prefix only", prefix.to_owned(), "Invalid API key"),
        ("prefix and a dot", format!("{prefix}."), "Invalid API key"),
        (
            "same prefix, other secret, valid checksum",
            ApiKeySecret::with_prefix(KeyPrefix::from_trusted(prefix.to_owned()))
                .expose()
                .to_owned(),
            "Invalid API key",
        ),
        (
            "bad checksum",
            format!("{prefix}.{}", "A".repeat(43)),
            "Invalid API key",
        ),
        ("last character changed", last_changed, "Invalid API key"),
        (
            "truncated",
            key[..key.len() - 1].to_owned(),
            "Invalid API key",
        ),
        (
            "not a key",
            "hello".to_owned(),
            "Invalid API key format. Must start with sk-",
        ),
        (
            "a JWT",
            user.access.clone(),
            "Invalid API key format. Must start with sk-",
        ),
    ] {
        let r = settings_with_key(&app, &format!("Bearer {candidate}")).await;
        let body = error_body(r, 401).await;
        assert_eq!(body["detail"], detail, "{name}");
    }
    let r = app
        .client
        .get(app.url("/api/v1/automation/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_body(r, 401).await["detail"], "API key missing");
}

#[tokio::test]
async fn a_revoked_key_is_refused_from_the_next_request() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let second = app.create_key(&user.access, "second").await;
    let second_key = second["key"].as_str().unwrap();
    let list: Value = app.get_json("/api/v1/auth/keys", &user.access).await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_prefix"] == second["key_prefix"])
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(settings_with_key(&app, second_key).await.status(), 200);

    let r = app
        .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
        .await;
    assert_eq!(r.status(), 200);
    let revoked: Value = r.json().await.unwrap();
    assert_eq!(revoked["is_active"], false);
    assert_eq!(revoked["id"], id);

    assert_eq!(settings_with_key(&app, second_key).await.status(), 401);
    // The other key still works, and revoking again is idempotent.
    assert_eq!(settings_with_key(&app, &user.api_key).await.status(), 200);
    let again = app
        .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
        .await;
    assert_eq!(again.status(), 200);
}

/// B1: another user's key id is "not found", and nothing happens to it.
#[tokio::test]
async fn keys_of_other_users_are_invisible_and_untouchable() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    let b = app.seed_user().await;
    let a_keys: Value = app.get_json("/api/v1/auth/keys", &a.access).await;
    let a_key_id = a_keys[0]["id"].as_i64().unwrap();

    let r = app
        .delete(&format!("/api/v1/auth/keys/{a_key_id}"), &b.access)
        .await;
    let cross = error_body(r, 404).await;
    let r = app
        .delete("/api/v1/auth/keys/4503599627370495", &b.access)
        .await;
    let missing = error_body(r, 404).await;
    assert_eq!(
        cross, missing,
        "another user's id must look like a missing id"
    );
    assert_eq!(cross["detail"], "API key not found");

    assert_eq!(
        settings_with_key(&app, &a.api_key).await.status(),
        200,
        "A's key still works"
    );
    let b_keys: Value = app.get_json("/api/v1/auth/keys", &b.access).await;
    assert!(
        b_keys
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != a_key_id)
    );
}

/// B2: an API key cannot manage accounts; a JWT cannot call API-key operations.
#[tokio::test]
async fn api_keys_and_access_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    for (method, path) in [
        (Method::GET, "/api/v1/auth/keys"),
        (Method::POST, "/api/v1/auth/keys"),
        (Method::GET, "/api/v1/auth/me"),
        (Method::GET, "/api/v1/auth/private-key"),
        (Method::DELETE, "/api/v1/auth/register"),
    ] {
        let r = app
            .authed(method.clone(), path, &user.api_key, Some(&json!({})))
            .await;
        assert_eq!(r.status(), 401, "{method} {path} accepted an API key");
    }
    let r = app
        .authed(
            Method::GET,
            "/api/v1/automation/settings",
            &user.access,
            None,
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "an access token opened an API-key operation"
    );
}

#[tokio::test]
async fn bad_key_ids_are_422() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    for id in ["abc", "0", "-5", "99999999999999999999999"] {
        let r = app
            .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
            .await;
        assert_eq!(r.status(), 422, "{id}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], json!(["path", "key_id"]));
    }
}

#[tokio::test]
async fn the_number_of_active_keys_is_capped() {
    let app = crate::helpers::spawn_app_with(|s| s.max_api_keys_per_user = 2).await;
    let user = app.seed_user().await;
    app.create_key(&user.access, "second").await;
    let r = app
        .authed(
            Method::POST,
            "/api/v1/auth/keys",
            &user.access,
            Some(&json!({})),
        )
        .await;
    error_body(r, 409).await;
}

/// The cap holds under concurrency: with one slot left, of 16 creations at once exactly one
/// gets it (a count followed by an insert would let several through).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_cannot_exceed_the_cap() {
    let app = crate::helpers::spawn_app_with(|s| s.max_api_keys_per_user = 3).await;
    let user = app.seed_user().await;
    app.create_key(&user.access, "second").await;

    let body = json!({});
    let statuses = futures_util::future::join_all(
        (0..16).map(|_| app.authed(Method::POST, "/api/v1/auth/keys", &user.access, Some(&body))),
    )
    .await
    .into_iter()
    .map(|r| r.status().as_u16())
    .collect::<Vec<_>>();

    let created = statuses.iter().filter(|&&s| s == 201 || s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 409).count();
    assert_eq!((created, refused), (1, 15), "{statuses:?}");
    let keys = app.get_json("/api/v1/auth/keys", &user.access).await;
    assert_eq!(keys.as_array().unwrap().len(), 3, "{keys}");
}

#[tokio::test]
async fn key_listings_are_paged_newest_first_and_capped() {
    let app = spawn_app_with(|s| {
        s.max_api_keys_per_user = 1_000;
        s.key_creations_per_day = 1_000;
    })
    .await;
    let a = app.seed_user().await;
    // The seed's key and 100 more: one more than a page.
    for n in 0..100 {
        app.create_key(&a.access, &format!("k{n}")).await;
    }
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Without parameters: the contract's plain array, the newest 100.
    let all = app.get_json("/api/v1/auth/keys", &a.access).await;
    let all = names(&all);
    assert_eq!(all.len(), 100);
    assert_eq!(all[0], "k99");
    assert_eq!(all[99], "k0");
    let rest = app.get_json("/api/v1/auth/keys?skip=100", &a.access).await;
    assert_eq!(names(&rest), ["default"]);
    let page = app
        .get_json("/api/v1/auth/keys?skip=2&limit=3", &a.access)
        .await;
    assert_eq!(names(&page), ["k97", "k96", "k95"]);
    // Other query parameters are ignored, as before paging.
    let r = app
        .authed(Method::GET, "/api/v1/auth/keys?x=1", &a.access, None)
        .await;
    assert_eq!(r.status(), 200);
    for (query, param) in [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("skip=-1", "skip"),
        ("limit=ten", "limit"),
    ] {
        let r = app
            .authed(
                Method::GET,
                &format!("/api/v1/auth/keys?{query}"),
                &a.access,
                None,
            )
            .await;
        let body = error_body(r, 422).await;
        assert_eq!(body["detail"][0]["loc"], json!(["query", param]), "{query}");
    }
}

/// An unknown prefix and a known prefix with a wrong secret do the same work (one lookup past
/// the cache, one HMAC), so their refusals take the same time: a prober cannot tell which
/// prefixes exist. Interleaved pairs, medians compared with a wide margin (a loaded machine
/// moves both alike).
#[tokio::test]
async fn an_unknown_prefix_and_a_wrong_secret_take_the_same_time() {
    const ROUNDS: usize = 300;
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let prefix = KeyPrefix::from_trusted(user.api_key[..9].to_owned());
    let time = async |key: &str| {
        let started = std::time::Instant::now();
        let r = settings_with_key(&app, &format!("Bearer {key}")).await;
        let elapsed = started.elapsed();
        assert_eq!(r.status(), 401);
        elapsed
    };
    // Warm both paths (the known key's row is cached from here on).
    for _ in 0..20 {
        time(ApiKeySecret::generate().expose()).await;
        time(ApiKeySecret::with_prefix(prefix.clone()).expose()).await;
    }
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let a = ApiKeySecret::generate();
        let b = ApiKeySecret::with_prefix(prefix.clone());
        // Alternate which goes first, so neither always follows the other.
        if i % 2 == 0 {
            unknown.push(time(a.expose()).await);
            wrong.push(time(b.expose()).await);
        } else {
            wrong.push(time(b.expose()).await);
            unknown.push(time(a.expose()).await);
        }
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (unknown, wrong) = (median(&mut unknown), median(&mut wrong));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    println!(
        "median refusal over {ROUNDS} each: unknown prefix {unknown:?}, known prefix with a \
         wrong secret {wrong:?} (ratio {ratio:.2})"
    );
    assert!(
        (1.0 / 1.3..=1.3).contains(&ratio),
        "unknown {unknown:?} vs wrong secret {wrong:?}"
    );
}
