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

/// What resealing every stored key under the current master key did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub examined: u64,
    pub resealed: u64,
    pub already_current: u64,
    /// Rows that could not be opened (sealed under a key that is not configured, or damaged).
    pub failed: u64,
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

    /// Moves every stored key to the current master key, so previous master keys can be
    /// retired. Safe to run while the gateway serves: a key the user replaces meanwhile is
    /// left as the user stored it.
    pub async fn reseal_all(&self) -> anyhow::Result<ResealReport> {
        const PAGE: u32 = 100;
        let mut report = ResealReport::default();
        let mut after = None;
        loop {
            let page = self.keys.list_wallet_keys(after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = Some(last.user_id);
            for stored in page {
                report.examined += 1;
                if self.sealer.is_current(&stored.sealed) {
                    report.already_current += 1;
                    continue;
                }
                let plain = match self.sealer.open(stored.user_id, &stored.sealed) {
                    Ok(plain) => plain,
                    Err(e) => {
                        tracing::error!(user_id = %stored.user_id, error = %e, "cannot reseal a wallet key");
                        report.failed += 1;
                        continue;
                    }
                };
                let resealed = self.sealer.seal(stored.user_id, &plain)?;
                if self
                    .keys
                    .replace_wallet_key(stored.user_id, stored.sealed, resealed, Utc::now())
                    .await?
                {
                    report.resealed += 1;
                } else {
                    // Replaced by its owner meanwhile, hence sealed under the current key.
                    report.already_current += 1;
                }
            }
        }
    }

    pub async fn delete(&self, user: UserId) -> Result<(), DeleteWalletKeyError> {
        if self.keys.delete_wallet_key(user).await? {
            Ok(())
        } else {
            Err(DeleteWalletKeyError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests;
