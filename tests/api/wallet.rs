//! Wallet private keys: validated, sealed, bound to their owner, never returned (A8).

use morpheus_domain::crypto::WalletSealer;
use morpheus_domain::{SealedWalletKey, UserId};
use reqwest::Method;
use serde_json::{Value, json};

use morpheus_gateway::secrets::secret;
use morpheus_gateway::startup::reseal_wallet_keys;

use crate::helpers::{MASTER_KEY_HEX, TestApp, error_body, spawn_app};

const WALLET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn sealer() -> WalletSealer {
    WalletSealer::new(&hex::decode(MASTER_KEY_HEX).unwrap()).unwrap()
}

fn sealed_of(app: &TestApp, user: i64) -> Vec<u8> {
    let dump = app.dump_table("wallet_keys");
    // SQLite quotes blobs as X'…', PostgreSQL's row_to_json writes "\\x…".
    let line = dump
        .lines()
        .find(|l| l.contains(&user.to_string()))
        .expect("a stored key");
    let hex_start = line
        .find("X'")
        .map(|i| i + 2)
        .or_else(|| line.find("\\\\x").map(|i| i + 3))
        .expect("hex blob");
    let hex: String = line[hex_start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    hex::decode(hex).unwrap()
}

async fn store_wallet_key(app: &TestApp, access: &str, key: &str) -> reqwest::Response {
    app.authed(
        Method::POST,
        "/api/v1/auth/private-key",
        access,
        Some(&json!({ "private_key": key })),
    )
    .await
}

#[tokio::test]
async fn a_stored_key_is_sealed_never_returned_and_bound_to_its_owner() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    let b = app.seed_user().await;

    let status: Value = app.get_json("/api/v1/auth/private-key", &a.access).await;
    assert_eq!(
        status,
        json!({"has_key": false, "created_at": null, "updated_at": null})
    );

    for user in [&a, &b] {
        let r = store_wallet_key(&app, &user.access, WALLET_KEY).await;
        assert_eq!(r.status(), 201);
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(&WALLET_KEY[2..]),
            "the key came back: {body}"
        );
    }
    let status: Value = app.get_json("/api/v1/auth/private-key", &a.access).await;
    assert_eq!(status["has_key"], true);
    assert!(status["created_at"].is_string());

    // Not in the database in clear; the same key sealed twice gives two ciphertexts.
    let dump = app.dump_table("wallet_keys").to_lowercase();
    assert!(!dump.contains(&WALLET_KEY[2..]));
    let sealed_a = sealed_of(&app, a.id);
    let sealed_b = sealed_of(&app, b.id);
    assert_ne!(sealed_a, sealed_b);

    // The row opens for its owner and not for anyone else: a ciphertext moved to another user's
    // row does not decrypt.
    let s = sealer();
    let opened = s
        .open(UserId(a.id), &SealedWalletKey(sealed_a.clone()))
        .unwrap();
    assert_eq!(opened.expose(), WALLET_KEY);
    assert!(s.open(UserId(b.id), &SealedWalletKey(sealed_a)).is_err());
}

#[tokio::test]
async fn replacing_and_deleting_a_key() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    assert_eq!(
        store_wallet_key(&app, &a.access, WALLET_KEY).await.status(),
        201
    );
    assert_eq!(
        store_wallet_key(&app, &a.access, &format!("0x{}", "ab".repeat(32)))
            .await
            .status(),
        201
    );
    let opened = sealer()
        .open(UserId(a.id), &SealedWalletKey(sealed_of(&app, a.id)))
        .unwrap();
    assert_eq!(opened.expose(), format!("0x{}", "ab".repeat(32)));

    let r = app.delete("/api/v1/auth/private-key", &a.access).await;
    assert_eq!(r.status(), 200);
    let r = app.delete("/api/v1/auth/private-key", &a.access).await;
    assert_eq!(error_body(r, 404).await["detail"], "Private key not found");
}

#[tokio::test]
async fn malformed_private_keys_are_422() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    for bad in [
        json!({"private_key": "0x123"}),
        json!({"private_key": format!("{}", "a".repeat(64))}),
        json!({"private_key": format!("0x{}zz", "a".repeat(62))}),
        json!({"private_key": 5}),
        json!({}),
        json!({"private_key": WALLET_KEY, "owner": 1}),
    ] {
        let r = app
            .authed(
                Method::POST,
                "/api/v1/auth/private-key",
                &a.access,
                Some(&bad),
            )
            .await;
        assert_eq!(r.status(), 422, "{bad}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(&WALLET_KEY[2..]), "the error echoes the key");
    }
}

/// A8: rotating the master key. After `reseal-wallet-keys`, every row opens with the new key
/// alone; the old key can be retired.
#[tokio::test]
async fn rotating_the_master_key_reseals_every_stored_key() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let user = app.seed_user().await;
        let r = store_wallet_key(&app, &user.access, WALLET_KEY).await;
        assert_eq!(r.status(), 201);
        users.push(user);
    }
    let new_master = "5a".repeat(32);
    let mut rotated = app.settings.clone();
    rotated.wallet_master_key = Some(secret(&new_master));
    rotated.wallet_previous_master_keys = Some(secret(MASTER_KEY_HEX));

    let report = reseal_wallet_keys(&rotated).await.unwrap();
    assert_eq!((report.examined, report.resealed, report.failed), (3, 3, 0));
    let new_only = WalletSealer::new(&hex::decode(&new_master).unwrap()).unwrap();
    for user in &users {
        let sealed = SealedWalletKey(sealed_of(&app, user.id));
        assert_eq!(
            new_only.open(UserId(user.id), &sealed).unwrap().expose(),
            WALLET_KEY
        );
        assert!(
            sealer().open(UserId(user.id), &sealed).is_err(),
            "the old key still opens it"
        );
    }

    // Idempotent: a second run has nothing to do.
    let again = reseal_wallet_keys(&rotated).await.unwrap();
    assert_eq!((again.resealed, again.already_current), (0, 3));

    // Rows under a key that is no longer configured fail loudly.
    let mut wrong = app.settings.clone();
    wrong.wallet_master_key = Some(secret(&"77".repeat(32)));
    let err = reseal_wallet_keys(&wrong).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("3 wallet keys could not be opened"),
        "{err}"
    );
}
