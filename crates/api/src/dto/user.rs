use chrono::{DateTime, Utc};
use morpheus_domain::{AccountDeletion, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "user@example.com", "password": "correct horse battery", "name": "Ada"}))]
pub struct UserCreate {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Not only whitespace, control or invisible characters.
    #[schema(
        min_length = 8,
        max_length = 1024,
        pattern = "[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u2800\\u3164\\uFE00-\\uFE0F\\uFEFF\\uFFA0\\uFFF0-\\uFFFB]"
    )]
    pub password: String,
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
    pub name: Option<String>,
    /// Accepted for compatibility with the original contract and ignored: new accounts are
    /// always active.
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// Login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "user@example.com", "password": "correct horse battery"}))]
pub struct UserLogin {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserResponse {
    pub id: i64,
    #[schema(format = Email)]
    pub email: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub is_active: bool,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            email: u.email.as_str().to_owned(),
            name: u.name.map(|n| n.as_str().to_owned()),
            is_active: u.is_active,
        }
    }
}

/// A fresh access token (30 minutes) and refresh token (7 days, single use).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(inline)]
    pub token_type: TokenType,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Bearer,
}

impl From<morpheus_domain::TokenPair> for Token {
    fn from(p: morpheus_domain::TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: TokenType::Bearer,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRefresh {
    #[schema(min_length = 1, max_length = 8192)]
    pub refresh_token: String,
}

/// A password change: the current password, and the new one (the rules of registration).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery", "new_password": "a new passphrase"}))]
pub struct PasswordChange {
    #[schema(min_length = 8, max_length = 1024)]
    pub current_password: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

/// Signing out: the refresh token of the login to end, or every login with `everywhere`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Logout {
    #[schema(min_length = 1, max_length = 8192)]
    pub refresh_token: String,
    /// End every login of the account, not only this one.
    #[serde(default)]
    #[schema(default = false)]
    pub everywhere: bool,
}

/// Confirms an account deletion when the access token's sign-in is not recent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeletionConfirmation {
    /// The account's current password.
    #[serde(default)]
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
}

/// What deleting an account removed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeleted {
    pub message: String,
    pub deleted_data: DeletedData,
    pub user_id: i64,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletedData {
    /// The user's own marketplace sessions, moved to the shared pool: they serve other
    /// requests until their end, when they are closed on chain so their stake comes back.
    pub sessions: i64,
    pub api_keys: i64,
    pub private_key: bool,
    pub automation_settings: bool,
    pub delegations: bool,
}

impl AccountDeleted {
    pub fn new(user_id: i64, d: AccountDeletion) -> Self {
        Self {
            message: "User account successfully deleted".to_owned(),
            deleted_data: DeletedData {
                sessions: i64::try_from(d.sessions).unwrap_or(i64::MAX),
                api_keys: i64::try_from(d.api_keys).unwrap_or(i64::MAX),
                private_key: d.private_key,
                automation_settings: d.automation_settings,
                delegations: d.delegations > 0,
            },
            user_id,
            deleted_at: Utc::now(),
        }
    }
}
