//! Domain outcomes → HTTP errors. Each domain operation's error enum is matched exhaustively, so
//! adding a variant forces a decision here.

use morpheus_domain::services::*;

use super::ApiError;

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::EmailTaken => ApiError::BadRequest(e.to_string()),
            RegisterError::Throttled(t) => ApiError::TooManyRequests {
                message: "Too many registrations from this address; try again later",
                retry_after: t.retry_after,
            },
            RegisterError::Busy => busy(),
            RegisterError::Unknown(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => ApiError::Unauthorized("Incorrect email or password"),
            LoginError::Throttled(t) => ApiError::TooManyRequests {
                message: "Too many login attempts; try again later",
                retry_after: t.retry_after,
            },
            LoginError::Busy => busy(),
            LoginError::Unknown(e) => e.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => ApiError::Unauthorized("Could not validate credentials"),
            RefreshError::Unknown(e) => e.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::Invalid => ApiError::Unauthorized("Could not validate credentials"),
            AuthenticateError::Unknown(e) => e.into(),
        }
    }
}

impl From<ApiKeyAuthError> for ApiError {
    fn from(e: ApiKeyAuthError) -> Self {
        match e {
            ApiKeyAuthError::Malformed => {
                ApiError::Unauthorized("Invalid API key format. Must start with sk-")
            }
            ApiKeyAuthError::Invalid => ApiError::Unauthorized("Invalid API key"),
            ApiKeyAuthError::Unknown(e) => e.into(),
        }
    }
}

impl From<DeleteAccountError> for ApiError {
    fn from(e: DeleteAccountError) -> Self {
        match e {
            DeleteAccountError::NotFound => ApiError::NotFound(e.to_string()),
            DeleteAccountError::RecentSignInRequired => ApiError::Forbidden(RECENT_SIGN_IN),
            DeleteAccountError::IncorrectPassword => ApiError::Forbidden(INCORRECT_PASSWORD),
            DeleteAccountError::Throttled(t) => password_attempts(t),
            DeleteAccountError::Busy => busy(),
            DeleteAccountError::Unknown(e) => e.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(e: ChangePasswordError) -> Self {
        match e {
            ChangePasswordError::IncorrectPassword => ApiError::Forbidden(INCORRECT_PASSWORD),
            ChangePasswordError::Throttled(t) => password_attempts(t),
            ChangePasswordError::Busy => busy(),
            ChangePasswordError::Gone => ApiError::Unauthorized("Could not validate credentials"),
            ChangePasswordError::Unknown(e) => e.into(),
        }
    }
}

/// 403, not 401: the access token is fine, so a client must not take this for an expired
/// token and refresh (which would not help).
const INCORRECT_PASSWORD: &str = "Incorrect password";
const RECENT_SIGN_IN: &str = "This needs a recent sign-in: send the current password as \
                              {\"password\": \"…\"}, or log in again";

fn password_attempts(t: morpheus_domain::ports::Throttled) -> ApiError {
    ApiError::TooManyRequests {
        message: "Too many password attempts; try again later",
        retry_after: t.retry_after,
    }
}

impl From<CreateApiKeyError> for ApiError {
    fn from(e: CreateApiKeyError) -> Self {
        match e {
            CreateApiKeyError::TooManyKeys(_) => ApiError::Conflict(e.to_string()),
            CreateApiKeyError::TooManyToday { retry_after, .. } => ApiError::TooManyRequests {
                message: "Too many API keys created in the last 24 hours, revoked ones included \
                          (the limit is MORPHEUS_KEY_CREATIONS_PER_DAY); try again after \
                          Retry-After seconds",
                retry_after,
            },
            CreateApiKeyError::Unknown(e) => e.into(),
        }
    }
}

impl From<SetDefaultApiKeyError> for ApiError {
    fn from(e: SetDefaultApiKeyError) -> Self {
        match e {
            SetDefaultApiKeyError::NotFound => ApiError::NotFound(e.to_string()),
            SetDefaultApiKeyError::Unknown(e) => e.into(),
        }
    }
}

impl From<RevokeApiKeyError> for ApiError {
    fn from(e: RevokeApiKeyError) -> Self {
        match e {
            RevokeApiKeyError::NotFound => ApiError::NotFound(e.to_string()),
            RevokeApiKeyError::Unknown(e) => e.into(),
        }
    }
}

impl From<UpdateApiKeyError> for ApiError {
    fn from(e: UpdateApiKeyError) -> Self {
        match e {
            UpdateApiKeyError::NotFound => ApiError::NotFound(e.to_string()),
            UpdateApiKeyError::Unknown(e) => e.into(),
        }
    }
}

impl From<DeleteWalletKeyError> for ApiError {
    fn from(e: DeleteWalletKeyError) -> Self {
        match e {
            DeleteWalletKeyError::NotFound => ApiError::NotFound(e.to_string()),
            DeleteWalletKeyError::Unknown(e) => e.into(),
        }
    }
}

impl From<StoreDelegationError> for ApiError {
    fn from(e: StoreDelegationError) -> Self {
        match e {
            StoreDelegationError::WrongDelegate(_) => ApiError::BadRequest(e.to_string()),
            StoreDelegationError::TooMany(_) => ApiError::Conflict(e.to_string()),
            StoreDelegationError::Unknown(e) => e.into(),
        }
    }
}

impl From<DeleteDelegationError> for ApiError {
    fn from(e: DeleteDelegationError) -> Self {
        match e {
            DeleteDelegationError::NotFound => ApiError::NotFound(e.to_string()),
            DeleteDelegationError::Unknown(e) => e.into(),
        }
    }
}

fn busy() -> ApiError {
    ApiError::ServiceUnavailable("The server is busy; try again shortly")
}

impl From<ResolveModelError> for ApiError {
    fn from(e: ResolveModelError) -> Self {
        match e {
            ResolveModelError::Unknown(name) => {
                ApiError::NotFound(format!("Model '{name}' not found"))
            }
            ResolveModelError::NotLoaded => ApiError::ServiceUnavailable(
                "The model list has not been loaded from the marketplace yet; retry shortly",
            ),
            ResolveModelError::NoDefault => ApiError::NotFound("No such model".to_owned()),
            mismatch @ ResolveModelError::TypeMismatch(_) => {
                ApiError::BadRequest(mismatch.to_string())
            }
        }
    }
}

impl From<OpenSessionError> for ApiError {
    fn from(e: OpenSessionError) -> Self {
        match e {
            OpenSessionError::Model(e) => e.into(),
            OpenSessionError::BidNotFound => ApiError::NotFound("Bid not found".to_owned()),
            OpenSessionError::ModelNotAllowed(_) => ApiError::Forbidden(
                "This API key may not use that model (its allowed_models); nothing was staked",
            ),
            OpenSessionError::Stake(refusal) => refusal.into(),
            OpenSessionError::Upstream(e) => e.into(),
            OpenSessionError::Unknown(e) => e.into(),
        }
    }
}

impl From<CloseSessionError> for ApiError {
    fn from(e: CloseSessionError) -> Self {
        match e {
            CloseSessionError::NotFound => ApiError::NotFound("Session not found".to_owned()),
            CloseSessionError::Upstream(e) => e.into(),
            CloseSessionError::Unknown(e) => e.into(),
        }
    }
}

impl From<PingSessionError> for ApiError {
    fn from(e: PingSessionError) -> Self {
        match e {
            PingSessionError::NotFound => ApiError::NotFound("Session not found".to_owned()),
            PingSessionError::Upstream(e) => e.into(),
            PingSessionError::Unknown(e) => e.into(),
        }
    }
}

impl From<ApproveError> for ApiError {
    fn from(e: ApproveError) -> Self {
        match e {
            ApproveError::NoSpender => ApiError::ServiceUnavailable(
                "No spender contract is configured (MORPHEUS_DIAMOND_CONTRACT_ADDRESS)",
            ),
            ApproveError::Upstream(e) => e.into(),
        }
    }
}

/// Chat history: another user's chat or message is "not found", never 403, so an id reveals
/// nothing about whether it exists.
mod chat_history {
    use morpheus_domain::services::*;

    use super::ApiError;

    impl From<CreateChatError> for ApiError {
        fn from(e: CreateChatError) -> Self {
            match e {
                CreateChatError::TooMany(_) => ApiError::Conflict(e.to_string()),
                CreateChatError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<GetChatError> for ApiError {
        fn from(e: GetChatError) -> Self {
            match e {
                GetChatError::NotFound => ApiError::NotFound(e.to_string()),
                GetChatError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<RenameChatError> for ApiError {
        fn from(e: RenameChatError) -> Self {
            match e {
                RenameChatError::NotFound => ApiError::NotFound(e.to_string()),
                RenameChatError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<DeleteChatError> for ApiError {
        fn from(e: DeleteChatError) -> Self {
            match e {
                DeleteChatError::NotFound => ApiError::NotFound(e.to_string()),
                DeleteChatError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<AddMessageError> for ApiError {
        fn from(e: AddMessageError) -> Self {
            match e {
                AddMessageError::ChatNotFound => ApiError::NotFound(e.to_string()),
                AddMessageError::TooMany(_) => ApiError::Conflict(e.to_string()),
                AddMessageError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<ListMessagesError> for ApiError {
        fn from(e: ListMessagesError) -> Self {
            match e {
                ListMessagesError::ChatNotFound => ApiError::NotFound(e.to_string()),
                ListMessagesError::Unknown(e) => e.into(),
            }
        }
    }

    impl From<DeleteMessageError> for ApiError {
        fn from(e: DeleteMessageError) -> Self {
            match e {
                DeleteMessageError::NotFound => ApiError::NotFound(e.to_string()),
                DeleteMessageError::Unknown(e) => e.into(),
            }
        }
    }
}
