pub mod approve_spending;
pub mod close_session;
pub mod create_bid_session;
pub mod create_model_session;
pub mod ping_session;

use morpheus_domain::services::{ApiKeyPrincipal, SessionOwner};
use morpheus_domain::{SessionDuration, SessionId, SessionTerms};

use crate::dto::SessionDataRequest;
use crate::error::{ApiError, FieldError, Fields, LocItem};

/// Sessions belong to the key a request was made with, not to "some key of the user".
pub(crate) fn owner(key: &ApiKeyPrincipal) -> SessionOwner {
    SessionOwner {
        key: key.key.id,
        user: key.key.user_id,
    }
}

fn terms(body: &SessionDataRequest) -> Result<SessionTerms, ApiError> {
    let mut fields = Fields::default();
    let duration = fields.check(
        "sessionDuration",
        body.session_duration
            .map(SessionDuration::parse)
            .transpose(),
    );
    let Some(duration) = duration else {
        return Err(fields.into());
    };
    Ok(SessionTerms {
        duration: duration.unwrap_or(SessionDuration::DEFAULT),
        direct_payment: body.direct_payment.unwrap_or(false),
        failover: body.failover.unwrap_or(false),
    })
}

/// A `session_id` query parameter, checked.
fn selected(raw: Option<&str>) -> Result<Option<SessionId>, ApiError> {
    raw.map(|s| {
        SessionId::parse(s).map_err(|invalid| {
            ApiError::validation(FieldError::new(
                vec![LocItem::from("query"), LocItem::from("session_id")],
                "string_pattern_mismatch",
                invalid.message,
            ))
        })
    })
    .transpose()
}
