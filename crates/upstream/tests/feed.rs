//! The active-models feed: a plain JSON file over HTTP, same shape as the chain's list.

mod common;

use std::time::Duration;

use common::*;
use morpheus_domain::ports::{MarketplaceError, ModelFeed};
use morpheus_upstream::ActiveModelsFeed;

const FEED: &str = r#"{"models":[
  {"Id":"0xdf474728f624712570170f311a866a6937436c14861568f38593a531b7f45845","IpfsCID":"0x0000000000000000000000000000000000000000000000000000000000000000","Fee":0,"Stake":0,"Owner":"0x0000000000000000000000000000000000000000","Name":"llama-3.3-70b","Tags":["LLM"],"CreatedAt":1735689600,"IsDeleted":false},
  {"Id":"0x1111111111111111111111111111111111111111111111111111111111111111","Name":"gone","Tags":[],"CreatedAt":1,"IsDeleted":true}
]}"#;

#[tokio::test]
async fn the_feed_is_read_without_credentials() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let base = fake(move |req, sock| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(req);
            respond(sock, 200, "application/json", FEED.as_bytes()).await;
        }
    })
    .await;
    let feed = ActiveModelsFeed::new(format!("{base}/active_models.json"), Duration::from_secs(2))
        .unwrap();
    let models = feed.active_models().await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].name, "llama-3.3-70b");
    assert_eq!(models[0].id, llama());
    assert!(models[1].is_deleted);
    let req = rx.recv().await.unwrap();
    assert_eq!(req.target, "/active_models.json");
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn feed_failures_are_mapped() {
    let base = fake(|req, sock| async move {
        match req.target.as_str() {
            "/missing" => respond(sock, 404, "text/plain", b"404 page not found").await,
            "/html" => respond(sock, 200, "text/html", b"<html></html>").await,
            _ => respond(sock, 200, "application/json", b"{\"models\":").await,
        }
    })
    .await;
    let at = |path: &str| {
        ActiveModelsFeed::new(format!("{base}{path}"), Duration::from_secs(2)).unwrap()
    };
    assert!(matches!(
        at("/missing").active_models().await,
        Err(MarketplaceError::Rejected { status: 404, .. })
    ));
    assert!(matches!(
        at("/html").active_models().await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    assert!(matches!(
        at("/broken").active_models().await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    let refused = ActiveModelsFeed::new(refused_base().await, Duration::from_secs(1)).unwrap();
    assert!(matches!(
        refused.active_models().await,
        Err(MarketplaceError::Unreachable(_))
    ));
    assert!(ActiveModelsFeed::new("ftp://x/y", Duration::from_secs(1)).is_err());
    assert!(ActiveModelsFeed::new("http://u:p@x/y", Duration::from_secs(1)).is_err());
}
