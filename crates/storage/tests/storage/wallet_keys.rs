use chrono::Duration;
use morpheus_domain::SealedWalletKey;
use morpheus_domain::ports::WalletKeyRepository;

use crate::harness::{each_backend, insert_user, now};

#[tokio::test]
async fn replacing_a_wallet_key_keeps_its_creation_time() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        assert!(t.db.find_wallet_key(alice.id).await.unwrap().is_none());

        let first_at = now() - Duration::hours(1);
        let first =
            t.db.upsert_wallet_key(alice.id, SealedWalletKey(vec![1; 60]), first_at)
                .await
                .unwrap();
        assert_eq!((first.created_at, first.updated_at), (first_at, first_at));

        let second_at = now();
        let second =
            t.db.upsert_wallet_key(alice.id, SealedWalletKey(vec![2; 60]), second_at)
                .await
                .unwrap();
        assert_eq!(second.sealed, SealedWalletKey(vec![2; 60]));
        assert_eq!(
            (second.created_at, second.updated_at),
            (first_at, second_at)
        );

        let found = t.db.find_wallet_key(alice.id).await.unwrap().unwrap();
        assert_eq!(found.sealed, second.sealed);
        assert_eq!(found.user_id, alice.id);

        assert!(t.db.delete_wallet_key(alice.id).await.unwrap());
        assert!(!t.db.delete_wallet_key(alice.id).await.unwrap());
        assert!(t.db.find_wallet_key(alice.id).await.unwrap().is_none());
    })
    .await;
}
