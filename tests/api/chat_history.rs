//! The chat-history API (`/api/v1/chat-history`): chats and messages a client stores per
//! user, with an API key.

use futures_util::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_body, spawn_app, spawn_app_with};

const BASE: &str = "/api/v1/chat-history";

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> Response {
    app.authed(method, &format!("{BASE}{path}"), key, body)
        .await
}

async fn create_chat(app: &TestApp, key: &str, title: &str) -> Value {
    let r = call(
        app,
        Method::POST,
        "/chats",
        key,
        Some(&json!({ "title": title })),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json().await.unwrap()
}

async fn add_message(app: &TestApp, key: &str, chat: &Value, role: &str, content: &str) -> Value {
    let r = post_message(app, key, chat, &json!({ "role": role, "content": content })).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json().await.unwrap()
}

async fn post_message(app: &TestApp, key: &str, chat: &Value, body: &Value) -> Response {
    let path = format!("/chats/{}/messages", chat["id"].as_str().unwrap());
    call(app, Method::POST, &path, key, Some(body)).await
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let r = call(app, Method::GET, path, key, None).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

fn sequences(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequence"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_chat_and_its_messages_round_trip_through_every_route() {
    let app = spawn_app().await;
    let key = app.seed_user().await.api_key;

    let chat = create_chat(&app, &key, "  Trip to Lisbon  ").await;
    let id = chat["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{chat}");
    assert_eq!(chat["title"], "Trip to Lisbon", "stored trimmed");
    assert_eq!(chat["message_count"], 0);
    assert_eq!(chat["is_archived"], false);
    assert_eq!(chat["created_at"], chat["updated_at"]);

    let first = add_message(&app, &key, &chat, "user", "Where to eat?").await;
    let r = post_message(
        &app,
        &key,
        &chat,
        &json!({"role": "assistant", "content": "Try Alfama.", "tokens": 7}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let second: Value = r.json().await.unwrap();
    assert_eq!(
        (first["sequence"].clone(), second["sequence"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(first["chat_id"], id.as_str());
    assert_eq!(
        (first["tokens"].clone(), second["tokens"].clone()),
        (Value::Null, json!(7))
    );
    assert_eq!(second["role"], "assistant");

    // The whole chat: messages in order, and the latest post is its last change.
    let detail = get(&app, &key, &format!("/chats/{id}")).await;
    assert_eq!(detail["message_count"], 2);
    assert_eq!(detail["messages"], json!([first, second]));
    assert_eq!(detail["updated_at"], second["created_at"]);

    let r = call(
        &app,
        Method::PUT,
        &format!("/chats/{id}"),
        &key,
        Some(&json!({"title": "Lisbon, final"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let renamed: Value = r.json().await.unwrap();
    assert_eq!(renamed["title"], "Lisbon, final");
    assert_eq!(renamed["message_count"], 2);
    assert!(renamed["updated_at"].as_str() > detail["updated_at"].as_str());

    let listed = get(&app, &key, "/chats").await;
    assert_eq!(listed, json!([renamed]));

    // Deleting a message leaves a gap; the next one still goes after the highest.
    let r = call(
        &app,
        Method::DELETE,
        &format!("/messages/{}", first["id"].as_str().unwrap()),
        &key,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let third = add_message(&app, &key, &chat, "user", "And after?").await;
    assert_eq!(third["sequence"], 3);
    let messages = get(&app, &key, &format!("/chats/{id}/messages")).await;
    assert_eq!(sequences(&messages), [2, 3]);
}

#[tokio::test]
async fn chats_are_listed_most_recently_updated_first_one_page_at_a_time() {
    let app = spawn_app().await;
    let key = app.seed_user().await.api_key;
    let mut chats = Vec::new();
    for n in 0..5 {
        chats.push(create_chat(&app, &key, &format!("chat {n}")).await);
    }
    // A message moves the oldest chat to the top.
    add_message(&app, &key, &chats[0], "user", "hello").await;
    let id = |n: usize| chats[n]["id"].as_str().unwrap();

    let page = |skip: u32, limit: u32| {
        let app = &app;
        let key = &key;
        async move { get(app, key, &format!("/chats?skip={skip}&limit={limit}")).await }
    };
    let first = page(0, 2).await;
    assert_eq!(ids(&first), [id(0), id(4)]);
    assert_eq!(first[0]["message_count"], 1);
    assert_eq!(first[1]["message_count"], 0);
    assert_eq!(ids(&page(2, 2).await), [id(3), id(2)]);
    assert_eq!(ids(&page(4, 2).await), [id(1)], "a short page is the last");
    assert_eq!(page(6, 2).await, json!([]));
    assert_eq!(get(&app, &key, "/chats").await.as_array().unwrap().len(), 5);

    for bad in [
        "limit=0",
        "limit=101",
        "skip=-1",
        "limit=ten",
        "include_archived=maybe",
    ] {
        let r = call(&app, Method::GET, &format!("/chats?{bad}"), &key, None).await;
        error_body(r, 422).await;
    }

    // Messages page in sequence order, up to 500 at a time.
    for n in 0..4 {
        add_message(&app, &key, &chats[1], "user", &format!("m{n}")).await;
    }
    let path = format!("/chats/{}/messages", id(1));
    let middle = get(&app, &key, &format!("{path}?skip=1&limit=2")).await;
    assert_eq!(sequences(&middle), [2, 3]);
    assert_eq!(middle[0]["content"], "m1");
    assert_eq!(
        sequences(&get(&app, &key, &format!("{path}?limit=500")).await),
        [1, 2, 3, 4]
    );
    for bad in ["limit=501", "limit=0", "skip=-1"] {
        let r = call(&app, Method::GET, &format!("{path}?{bad}"), &key, None).await;
        error_body(r, 422).await;
    }
}

#[tokio::test]
async fn archiving_hides_a_chat_and_a_hard_delete_removes_it_with_its_messages() {
    let app = spawn_app().await;
    let key = app.seed_user().await.api_key;
    let kept = create_chat(&app, &key, "kept").await;
    let archived = create_chat(&app, &key, "archived").await;
    let (kept_id, archived_id) = (
        kept["id"].as_str().unwrap(),
        archived["id"].as_str().unwrap(),
    );
    add_message(&app, &key, &kept, "user", "one").await;
    add_message(&app, &key, &archived, "user", "two").await;

    // Archiving is the default, and again is not an error.
    for _ in 0..2 {
        let r = call(
            &app,
            Method::DELETE,
            &format!("/chats/{archived_id}"),
            &key,
            None,
        )
        .await;
        assert_eq!(r.status(), 204);
    }
    assert_eq!(ids(&get(&app, &key, "/chats").await), [kept_id]);
    let all = get(&app, &key, "/chats?include_archived=true").await;
    assert_eq!(ids(&all), [archived_id, kept_id]);
    assert_eq!(all[0]["is_archived"], true);
    let detail = get(&app, &key, &format!("/chats/{archived_id}")).await;
    assert_eq!(
        (
            detail["is_archived"].clone(),
            detail["message_count"].clone()
        ),
        (json!(true), json!(1))
    );

    let r = call(
        &app,
        Method::DELETE,
        &format!("/chats/{kept_id}?archive_only=false"),
        &key,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = call(&app, Method::GET, &format!("/chats/{kept_id}"), &key, None).await;
    assert_eq!(error_body(r, 404).await["detail"], "Chat not found");
    let left = |chat: &str| {
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM messages WHERE chat_id = '{chat}'"
        ))
    };
    assert_eq!(left(kept_id), 0, "the messages went with the chat");
    assert_eq!(left(archived_id), 1, "an archived chat keeps its messages");

    let r = call(
        &app,
        Method::DELETE,
        &format!("/chats/{archived_id}?archive_only=maybe"),
        &key,
        None,
    )
    .await;
    error_body(r, 422).await;
}

#[tokio::test]
async fn another_users_chat_or_message_is_not_found_on_every_route() {
    let app = spawn_app().await;
    let owner = app.seed_user().await.api_key;
    let other = app.seed_user().await.api_key;
    let chat = create_chat(&app, &owner, "private").await;
    let message = add_message(&app, &owner, &chat, "user", "secret").await;
    let chat_id = chat["id"].as_str().unwrap();
    let message_id = message["id"].as_str().unwrap();

    let unknown = uuid::Uuid::new_v4().to_string();
    let title = json!({"title": "mine now"});
    let text = json!({"role": "user", "content": "hi"});
    // The other user's view of the owner's ids, an unknown UUID and a malformed id: all the
    // same 404.
    for (who, chat, msg) in [
        (&other, chat_id, message_id),
        (&owner, unknown.as_str(), unknown.as_str()),
        (&owner, "not-a-uuid", "42"),
    ] {
        let routes: [(Method, String, Option<&Value>, &str); 8] = [
            (
                Method::GET,
                format!("/chats/{chat}"),
                None,
                "Chat not found",
            ),
            (
                Method::PUT,
                format!("/chats/{chat}"),
                Some(&title),
                "Chat not found",
            ),
            (
                Method::DELETE,
                format!("/chats/{chat}"),
                None,
                "Chat not found",
            ),
            (
                Method::DELETE,
                format!("/chats/{chat}?archive_only=false"),
                None,
                "Chat not found",
            ),
            (
                Method::POST,
                format!("/chats/{chat}/messages"),
                Some(&text),
                "Chat not found",
            ),
            (
                Method::GET,
                format!("/chats/{chat}/messages"),
                None,
                "Chat not found",
            ),
            (
                Method::DELETE,
                format!("/messages/{msg}"),
                None,
                "Message not found",
            ),
            (
                Method::DELETE,
                format!("/messages/{msg}"),
                None,
                "Message not found",
            ),
        ];
        for (method, path, body, detail) in routes {
            let r = call(&app, method.clone(), &path, who, body).await;
            let status = r.status();
            assert_eq!(status, 404, "{method} {path}");
            assert_eq!(
                r.json::<Value>().await.unwrap()["detail"],
                detail,
                "{method} {path}"
            );
        }
    }
    assert_eq!(
        get(&app, &other, "/chats?include_archived=true").await,
        json!([])
    );

    // Nothing the other user tried changed the owner's chat.
    let detail = get(&app, &owner, &format!("/chats/{chat_id}")).await;
    assert_eq!(detail["title"], "private");
    assert_eq!(detail["is_archived"], false);
    assert_eq!(detail["messages"], json!([message]));
}

#[tokio::test]
async fn concurrent_posts_get_distinct_consecutive_sequences() {
    let app = spawn_app().await;
    let key = app.seed_user().await.api_key;
    let chat = create_chat(&app, &key, "busy").await;

    const POSTS: i64 = 24;
    let posts = (0..POSTS).map(|n| {
        let body = json!({"role": "user", "content": format!("m{n}")});
        let (app, key, chat) = (&app, &key, &chat);
        async move { post_message(app, key, chat, &body).await }
    });
    let mut seen = Vec::new();
    for r in join_all(posts).await {
        assert_eq!(r.status(), 201);
        seen.push(
            r.json::<Value>().await.unwrap()["sequence"]
                .as_i64()
                .unwrap(),
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=POSTS).collect::<Vec<_>>());
    let detail = get(
        &app,
        &key,
        &format!("/chats/{}", chat["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(detail["message_count"], POSTS);
    assert_eq!(
        sequences(&detail["messages"]),
        (1..=POSTS).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_operators_bounds_are_enforced_with_errors_naming_them() {
    let app = spawn_app_with(|s| {
        s.max_chats_per_user = 3;
        s.max_messages_per_chat = 2;
        s.max_chat_message_bytes = 8;
    })
    .await;
    let key = app.seed_user().await.api_key;

    // Concurrent creations cannot pass the cap together.
    let creations = (0..6).map(|n| {
        let (app, key) = (&app, &key);
        async move {
            call(
                app,
                Method::POST,
                "/chats",
                key,
                Some(&json!({"title": format!("c{n}")})),
            )
            .await
        }
    });
    let statuses: Vec<u16> = join_all(creations)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        3,
        "{statuses:?}"
    );
    let r = call(
        &app,
        Method::POST,
        "/chats",
        &key,
        Some(&json!({"title": "one more"})),
    )
    .await;
    let refused = error_body(r, 409).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("3 chats"),
        "{refused}"
    );

    // An archived chat still counts; a deleted one frees its place.
    let chats = get(&app, &key, "/chats").await;
    let first = chats[0]["id"].as_str().unwrap();
    call(&app, Method::DELETE, &format!("/chats/{first}"), &key, None).await;
    let r = call(
        &app,
        Method::POST,
        "/chats",
        &key,
        Some(&json!({"title": "one more"})),
    )
    .await;
    assert_eq!(r.status(), 409);
    call(
        &app,
        Method::DELETE,
        &format!("/chats/{first}?archive_only=false"),
        &key,
        None,
    )
    .await;
    let chat = create_chat(&app, &key, "one more").await;

    // Content is counted in bytes: eight ASCII letters fit, five two-byte letters do not.
    add_message(&app, &key, &chat, "user", "12345678").await;
    let r = post_message(
        &app,
        &key,
        &chat,
        &json!({"role": "user", "content": "ééééé"}),
    )
    .await;
    let body = error_body(r, 422).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "content"]));
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("limit is 8 bytes"),
        "{body}"
    );

    add_message(&app, &key, &chat, "assistant", "ok").await;
    let r = post_message(
        &app,
        &key,
        &chat,
        &json!({"role": "user", "content": "3rd"}),
    )
    .await;
    let refused = error_body(r, 409).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("2 messages"),
        "{refused}"
    );
}

#[tokio::test]
async fn deleting_the_account_deletes_its_chats_and_messages() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let bystander = app.seed_user().await.api_key;
    for title in ["a", "b"] {
        let chat = create_chat(&app, &user.api_key, title).await;
        add_message(&app, &user.api_key, &chat, "user", "hello").await;
    }
    let kept = create_chat(&app, &bystander, "kept").await;
    add_message(&app, &bystander, &kept, "user", "hello").await;
    let rows = |table: &str| app.count(&format!("SELECT COUNT(*) AS n FROM {table}"));
    assert_eq!((rows("chats"), rows("messages")), (3, 3));

    let r = app.delete("/api/v1/auth/register", &user.access).await;
    assert_eq!(r.status(), 200);

    let owned = app.count(&format!(
        "SELECT COUNT(*) AS n FROM chats WHERE user_id = {}",
        user.id
    ));
    assert_eq!(owned, 0);
    assert_eq!(
        (rows("chats"), rows("messages")),
        (1, 1),
        "only the other user's are left"
    );
}

#[tokio::test]
async fn bad_inputs_get_the_documented_errors() {
    let app = spawn_app().await;
    let key = app.seed_user().await.api_key;
    let chat = create_chat(&app, &key, &"t".repeat(200)).await;

    let titles = [
        (json!({"title": ""}), "string_too_short"),
        (json!({"title": "  \t "}), "string_too_short"),
        (json!({"title": "t".repeat(201)}), "string_too_long"),
        (
            json!({"title": format!("{} ", "t".repeat(200))}),
            "string_too_long",
        ),
        (json!({}), "missing"),
        (json!({"title": 5}), "string_type"),
        (json!({"title": "x", "user_id": 1}), "extra_forbidden"),
    ];
    let chat_path = format!("/chats/{}", chat["id"].as_str().unwrap());
    for (body, kind) in titles {
        for (method, path) in [(Method::POST, "/chats"), (Method::PUT, chat_path.as_str())] {
            let r = call(&app, method.clone(), path, &key, Some(&body)).await;
            let err = error_body(r, 422).await;
            assert_eq!(err["detail"][0]["type"], kind, "{method} {body}: {err}");
        }
    }

    let messages = [
        (
            json!({"role": "system", "content": "x"}),
            "Invalid role. Must be 'user' or 'assistant'",
        ),
        (
            json!({"role": "user", "content": "x", "tokens": -1}),
            "Input should be between 0 and 2147483647",
        ),
        (
            json!({"role": "user", "content": "a\u{0}b"}),
            "String must not contain NUL characters",
        ),
        (json!({"role": "user"}), "Field required"),
    ];
    for (body, msg) in messages {
        let err = error_body(post_message(&app, &key, &chat, &body).await, 422).await;
        assert_eq!(err["detail"][0]["msg"], msg, "{body}: {err}");
    }

    // Without a key, or with a bad one: 401, whatever the id.
    let r = app
        .client
        .get(app.url(&format!("{BASE}/chats")))
        .send()
        .await
        .unwrap();
    error_body(r, 401).await;
    let r = call(
        &app,
        Method::GET,
        "/chats/not-a-uuid",
        "sk-not-a-real-key",
        None,
    )
    .await;
    error_body(r, 401).await;
}
