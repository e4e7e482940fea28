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
    limits: DelegationLimits,
}

/// What one user may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelegationLimits {
    /// Delegations stored per user, active or not.
    pub per_user: u64,
    /// Characters of one signed delegation.
    pub max_chars: usize,
}

impl Default for DelegationLimits {
    fn default() -> Self {
        Self {
            per_user: 100,
            max_chars: SignedDelegation::MAX_CHARS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreDelegationError {
    #[error("Delegation must be granted to the configured gateway address: {0}")]
    WrongDelegate(String),
    #[error("You already store {0} delegations; delete one before storing another")]
    TooMany(u64),
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
            limits: DelegationLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: DelegationLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The most characters a signed delegation may have here.
    pub fn max_chars(&self) -> usize {
        self.limits.max_chars
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
            match self
                .delegations
                .insert_delegation(delegation, self.limits.per_user)
                .await
            {
                Ok(d) => return Ok(d),
                Err(InsertDelegationError::IdTaken) => continue,
                Err(InsertDelegationError::LimitReached) => {
                    return Err(StoreDelegationError::TooMany(self.limits.per_user));
                }
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
