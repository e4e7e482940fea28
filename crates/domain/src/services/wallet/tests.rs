//! The wallet service's branches, on in-memory ports (`crate::testing`).

use std::sync::atomic::Ordering;

use super::*;
use crate::testing::MemoryStore;

const OLD: [u8; 32] = [1; 32];
const NEW: [u8; 32] = [2; 32];
const LOST: [u8; 32] = [3; 32];

fn key(n: u8) -> WalletPrivateKey {
    WalletPrivateKey::parse(format!("0x{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn service(store: &Arc<MemoryStore>, current: &[u8], previous: &[Vec<u8>]) -> WalletService {
    WalletService::new(
        store.clone(),
        Arc::new(WalletSealer::with_previous(current, previous).unwrap()),
    )
}

#[tokio::test]
async fn a_stored_key_is_sealed_to_its_owner_and_only_its_status_is_told() {
    let store = Arc::new(MemoryStore::default());
    let wallets = service(&store, &NEW, &[]);
    let user = UserId(7);
    assert!(!wallets.status(user).await.unwrap().has_key);
    let first = wallets.store(user, key(0xab)).await.unwrap();
    assert!(first.has_key);
    let sealed = store.wallet_keys.lock().unwrap()[&user].sealed.clone();
    assert!(
        !sealed.0.windows(32).any(|w| w == [0xab; 32]),
        "not in clear"
    );
    let sealer = WalletSealer::new(&NEW).unwrap();
    assert_eq!(
        sealer.open(user, &sealed).unwrap().expose(),
        key(0xab).expose()
    );
    assert!(
        sealer.open(UserId(8), &sealed).is_err(),
        "bound to its owner"
    );

    // Replacing keeps when it was first stored.
    let second = wallets.store(user, key(0xcd)).await.unwrap();
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(
        wallets.status(user).await.unwrap().updated_at,
        second.updated_at
    );

    wallets.delete(user).await.unwrap();
    assert!(matches!(
        wallets.delete(user).await,
        Err(DeleteWalletKeyError::NotFound)
    ));
}

#[tokio::test]
async fn resealing_moves_old_keys_to_the_current_master_key_and_counts_what_it_could_not_open() {
    let store = Arc::new(MemoryStore::default());
    let before_rotation = service(&store, &OLD, &[]);
    // More than one page of keys under the old master key.
    for user in 1..=150 {
        before_rotation
            .store(UserId(user), key(user as u8))
            .await
            .unwrap();
    }
    // One under a key nobody configures any more, one already under the new key.
    service(&store, &LOST, &[])
        .store(UserId(500), key(1))
        .await
        .unwrap();
    let rotated = service(&store, &NEW, &[OLD.to_vec()]);
    rotated.store(UserId(600), key(2)).await.unwrap();

    let report = rotated.reseal_all().await.unwrap();
    assert_eq!(
        report,
        ResealReport {
            examined: 152,
            resealed: 150,
            already_current: 1,
            failed: 1,
        }
    );
    let only_new = WalletSealer::new(&NEW).unwrap();
    for user in 1..=150 {
        let sealed = store.wallet_keys.lock().unwrap()[&UserId(user)]
            .sealed
            .clone();
        assert_eq!(
            only_new.open(UserId(user), &sealed).unwrap().expose(),
            key(user as u8).expose()
        );
    }
    // Run again: nothing left to do but the key nobody can open.
    let again = rotated.reseal_all().await.unwrap();
    assert_eq!(
        (again.resealed, again.already_current, again.failed),
        (0, 151, 1)
    );
}

#[tokio::test]
async fn a_key_its_owner_replaced_during_the_reseal_is_left_as_the_owner_stored_it() {
    let store = Arc::new(MemoryStore::default());
    service(&store, &OLD, &[])
        .store(UserId(1), key(9))
        .await
        .unwrap();
    store
        .wallet_replaced_meanwhile
        .store(true, Ordering::SeqCst);
    let report = service(&store, &NEW, &[OLD.to_vec()])
        .reseal_all()
        .await
        .unwrap();
    assert_eq!((report.resealed, report.already_current), (0, 1));
}
