//! Prints what credentials cost on this machine: one argon2id verify (a login), and one API-key
//! check, both the keyed digest alone and the whole `ApiKeyService::authenticate` against a real
//! SQLite database (prefix lookup, constant-time comparison, last-use coalescing).
//!
//! `cargo run --release --example credential_costs`

use std::sync::Arc;
use std::time::{Duration, Instant};

use morpheus_api::auth::Argon2Hasher;
use morpheus_domain::crypto::ApiKeyHasher;
use morpheus_domain::ports::{PasswordHasher, UserRepository};
use morpheus_domain::services::ApiKeyService;
use morpheus_domain::{ApiKeySecret, Email, NewUser, Password, UserId};
use morpheus_gateway::configuration::Settings;
use morpheus_gateway::startup::pool_options;
use morpheus_storage::{Database, DatabaseUrl};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let password =
        Password::parse("correct horse battery".to_owned()).map_err(anyhow::Error::msg)?;
    let hasher = Argon2Hasher::new(1, Duration::from_secs(10))?;
    let hash = hasher.hash(&password).await?;
    let mut verifies = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        hasher.verify(&password, Some(&hash)).await?;
        verifies.push(t.elapsed());
    }
    let argon = median(verifies);

    let key_hasher = ApiKeyHasher::new(&[7u8; 32])?;
    let secret = ApiKeySecret::generate();
    let digest = key_hasher.digest(&secret);
    let rounds = 200_000u32;
    let t = Instant::now();
    for _ in 0..rounds {
        let parsed = ApiKeySecret::parse(secret.expose()).map_err(anyhow::Error::msg)?;
        assert!(key_hasher.verify(&parsed, Some(&digest)));
    }
    let digest_cost = t.elapsed() / rounds;

    let dir = tempfile::tempdir()?;
    let db = Database::connect(
        &DatabaseUrl::parse(&dir.path().join("bench.db").display().to_string())?,
        pool_options(&Settings::default()),
    )?;
    db.migrate().await?;
    let db = Arc::new(db);
    let user = db
        .insert_user(NewUser {
            id: UserId::random(),
            email: Email::parse("bench@example.com").map_err(anyhow::Error::msg)?,
            name: None,
            password_hash: hash,
            created_at: chrono::Utc::now(),
        })
        .await?;
    let service = ApiKeyService::new(db.clone(), key_hasher);
    let (_, key) = service
        .create(user.id, None, morpheus_domain::KeyPolicy::default())
        .await?;
    let mut checks = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        service.authenticate(key.expose()).await?;
        checks.push(t.elapsed());
    }
    let end_to_end = median(checks);

    println!("argon2id verify (m=19456,t=2,p=1), median of 20: {argon:?}");
    println!(
        "  → about {:.0} logins/s per core",
        1.0 / argon.as_secs_f64()
    );
    println!("API key parse + HMAC-SHA256 verify, mean of {rounds}: {digest_cost:?}");
    println!(
        "ApiKeyService::authenticate on SQLite (lookup + verify), median of 2000: {end_to_end:?}"
    );
    Ok(())
}
