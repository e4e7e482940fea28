use std::sync::Arc;

use morpheus_domain::ports::HealthProbe;
use morpheus_domain::services::{
    AccountService, ApiKeyService, AutomationService, DelegationService, WalletService,
};

/// What the service says about itself on `/` and `/health`.
#[derive(Debug, Clone)]
pub struct ServiceMeta {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// Everything handlers need, shared by all workers (`web::Data<AppState>`).
#[derive(Clone)]
pub struct AppState {
    pub accounts: AccountService,
    pub api_keys: ApiKeyService,
    pub wallets: WalletService,
    pub delegations: DelegationService,
    pub automation: AutomationService,
    pub health: Arc<dyn HealthProbe>,
    pub meta: ServiceMeta,
}
