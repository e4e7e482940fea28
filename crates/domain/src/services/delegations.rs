use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::MAX_DRAWS;
use crate::model::*;
use crate::ports::*;

/// Signed delegations a user grants the gateway's address (stored for later use on chain).
#[derive(Clone)]
pub struct DelegationService {
    delegations: Arc<dyn DelegationRepository>,
    /// When configured, delegations must be granted to this address.
    gateway_address: Option<EthAddress>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreDelegationError {
    #[error("Delegation must be granted to the configured gateway address: {0}")]
    WrongDelegate(String),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteDelegationError {
    #[error("Delegation not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// A delegation as submitted.
#[derive(Debug, Clone)]
pub struct NewDelegation {
    pub delegate_address: EthAddress,
    pub signed_delegation_data: SignedDelegation,
    pub expiry: Option<DateTime<Utc>>,
    pub is_active: bool,
}

impl DelegationService {
    pub fn new(
        delegations: Arc<dyn DelegationRepository>,
        gateway_address: Option<EthAddress>,
    ) -> Self {
        Self {
            delegations,
            gateway_address,
        }
    }

    pub async fn store(
        &self,
        user: UserId,
        new: NewDelegation,
    ) -> Result<Delegation, StoreDelegationError> {
        if let Some(gateway) = &self.gateway_address
            && !gateway.same_account(&new.delegate_address)
        {
            return Err(StoreDelegationError::WrongDelegate(
                gateway.as_str().to_owned(),
            ));
        }
        for _ in 0..MAX_DRAWS {
            let delegation = Delegation {
                id: DelegationId::random(),
                user_id: user,
                delegate_address: new.delegate_address.clone(),
                signed_delegation_data: new.signed_delegation_data.clone(),
                expiry: new.expiry,
                is_active: new.is_active,
                created_at: Utc::now(),
            };
            match self.delegations.insert_delegation(delegation).await {
                Ok(d) => return Ok(d),
                Err(InsertDelegationError::IdTaken) => continue,
                Err(InsertDelegationError::Unknown(e)) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!("could not draw a free delegation id").into())
    }

    pub async fn list(&self, user: UserId, page: Page) -> anyhow::Result<Vec<Delegation>> {
        self.delegations.list_delegations(user, page).await
    }

    pub async fn active(&self, user: UserId) -> anyhow::Result<Option<Delegation>> {
        self.delegations.find_active_delegation(user).await
    }

    pub async fn delete(
        &self,
        user: UserId,
        id: DelegationId,
    ) -> Result<(), DeleteDelegationError> {
        if self.delegations.delete_delegation(user, id).await? {
            Ok(())
        } else {
            Err(DeleteDelegationError::NotFound)
        }
    }
}
