use std::sync::Arc;

use chrono::Utc;

use crate::crypto::WalletSealer;
use crate::model::*;
use crate::ports::*;

/// Storing a user's wallet private key, sealed. The key is never returned by any operation.
#[derive(Clone)]
pub struct WalletService {
    keys: Arc<dyn WalletKeyRepository>,
    sealer: Arc<WalletSealer>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteWalletKeyError {
    #[error("Private key not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl WalletService {
    pub fn new(keys: Arc<dyn WalletKeyRepository>, sealer: Arc<WalletSealer>) -> Self {
        Self { keys, sealer }
    }

    /// Seals and stores the key, replacing any previous one.
    pub async fn store(
        &self,
        user: UserId,
        key: WalletPrivateKey,
    ) -> anyhow::Result<WalletKeyStatus> {
        let sealed = self.sealer.seal(user, &key)?;
        let stored = self
            .keys
            .upsert_wallet_key(user, sealed, Utc::now())
            .await?;
        Ok(WalletKeyStatus {
            has_key: true,
            created_at: Some(stored.created_at),
            updated_at: Some(stored.updated_at),
        })
    }

    pub async fn status(&self, user: UserId) -> anyhow::Result<WalletKeyStatus> {
        Ok(match self.keys.find_wallet_key(user).await? {
            Some(stored) => WalletKeyStatus {
                has_key: true,
                created_at: Some(stored.created_at),
                updated_at: Some(stored.updated_at),
            },
            None => WalletKeyStatus {
                has_key: false,
                created_at: None,
                updated_at: None,
            },
        })
    }

    pub async fn delete(&self, user: UserId) -> Result<(), DeleteWalletKeyError> {
        if self.keys.delete_wallet_key(user).await? {
            Ok(())
        } else {
            Err(DeleteWalletKeyError::NotFound)
        }
    }
}
