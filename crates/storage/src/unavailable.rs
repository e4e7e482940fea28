//! Which database failures are outages rather than bugs: the HTTP layer answers those 503 with
//! `Retry-After` (see `StorageUnavailable`), everything else an opaque 500.

use diesel::result::{DatabaseErrorKind, Error};
use morpheus_domain::ports::{
    InsertApiKeyError, InsertChatError, InsertDelegationError, InsertMessageError,
    InsertSessionError, InsertUserError, StorageUnavailable,
};

/// SQLite's messages for conditions that pass once the operator or the other writer has acted:
/// `SQLITE_FULL` (no space left on the device) and `SQLITE_BUSY` (the busy timeout ran out).
/// Diesel reports both as `DatabaseErrorKind::Unknown` with SQLite's own text.
const TRANSIENT_SQLITE_MESSAGES: &[&str] = &["database or disk is full", "database is locked"];

/// The end of PostgreSQL's message when a data file cannot grow (SQLSTATE 53100, e.g.
/// `could not extend file "base/16384/2619": No space left on device`). Diesel exposes no
/// SQLSTATE, and the message is the OS's `strerror` text, so it is matched as a suffix.
const POSTGRES_DISK_FULL_SUFFIX: &str = "No space left on device";

fn is_outage(error: &Error) -> bool {
    match error {
        // The server went away mid-session (PostgreSQL restarted or crashed).
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            TRANSIENT_SQLITE_MESSAGES.contains(&info.message())
                || info.message().ends_with(POSTGRES_DISK_FULL_SUFFIX)
        }
        _ => false,
    }
}

/// Re-roots an outage under [`StorageUnavailable`], which the HTTP layer looks for; other
/// errors pass unchanged.
pub(crate) trait MarkOutage {
    #[must_use]
    fn mark_outage(self) -> Self;
}

impl MarkOutage for anyhow::Error {
    fn mark_outage(self) -> Self {
        let outage = self
            .chain()
            .filter_map(|cause| cause.downcast_ref::<Error>())
            .any(is_outage);
        if outage {
            // The marker must be the root; the original chain, for the log, is the context.
            anyhow::Error::new(StorageUnavailable).context(format!("{self:#}"))
        } else {
            self
        }
    }
}

/// The ports' error enums: only their `Unknown` cause can be an outage.
macro_rules! mark_outage_in_unknown {
    ($($port_error:ident),*) => {$(
        impl MarkOutage for $port_error {
            fn mark_outage(self) -> Self {
                match self {
                    $port_error::Unknown(cause) => $port_error::Unknown(cause.mark_outage()),
                    other => other,
                }
            }
        }
    )*};
}

mark_outage_in_unknown!(
    InsertUserError,
    InsertApiKeyError,
    InsertDelegationError,
    InsertSessionError,
    InsertChatError,
    InsertMessageError
);

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use diesel::result::DatabaseErrorInformation;

    use super::*;

    struct Message(&'static str);

    impl DatabaseErrorInformation for Message {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn failed(kind: DatabaseErrorKind, message: &'static str) -> anyhow::Error {
        Err::<(), _>(Error::DatabaseError(kind, Box::new(Message(message))))
            .context("inserting a user")
            .unwrap_err()
    }

    fn is_marked(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<StorageUnavailable>())
    }

    #[test]
    fn a_full_disk_a_lock_timeout_and_a_lost_server_are_outages() {
        let full = failed(DatabaseErrorKind::Unknown, "database or disk is full").mark_outage();
        assert!(is_marked(&full));
        assert!(format!("{full:#}").contains("inserting a user"), "{full:#}");
        assert!(is_marked(
            &failed(DatabaseErrorKind::Unknown, "database is locked").mark_outage()
        ));
        assert!(is_marked(
            &failed(
                DatabaseErrorKind::Unknown,
                "could not extend file \"base/16384/2619\": No space left on device"
            )
            .mark_outage()
        ));
        assert!(is_marked(
            &failed(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection"
            )
            .mark_outage()
        ));
    }

    #[test]
    fn constraint_violations_and_other_failures_stay_internal_errors() {
        for error in [
            failed(
                DatabaseErrorKind::UniqueViolation,
                "UNIQUE constraint failed",
            ),
            failed(DatabaseErrorKind::Unknown, "no such table: users"),
            anyhow::anyhow!("a new API key vanished"),
        ] {
            assert!(!is_marked(&error.mark_outage()));
        }
        let collision = InsertApiKeyError::Collision.mark_outage();
        assert!(matches!(collision, InsertApiKeyError::Collision));
    }
}
