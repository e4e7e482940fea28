use morpheus_domain::ListInvalid;
use morpheus_domain::validation::Invalid;

use super::{ApiError, FieldError, LocItem};

/// Collects every invalid field of a body before answering, so a client sees all its mistakes
/// in one 422 instead of one per round trip.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// Records the error of a body field, if any, and passes the value on.
    pub fn check<T>(&mut self, field: &str, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError::body(field, e));
                None
            }
        }
    }

    /// As [`Self::check`] for a list field: the error points at the member at fault, when
    /// one is (`["body", field, index, member]`).
    pub fn check_list<T>(&mut self, field: &str, result: Result<T, ListInvalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let mut loc = vec![LocItem::from("body"), LocItem::from(field)];
                if let Some(index) = e.index {
                    loc.push(LocItem::Index(i64::try_from(index).unwrap_or(i64::MAX)));
                }
                if let Some(member) = e.member {
                    loc.push(LocItem::from(member));
                }
                self.0
                    .push(FieldError::new(loc, e.invalid.kind, e.invalid.message));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Fields> for ApiError {
    fn from(f: Fields) -> Self {
        ApiError::Validation(f.0)
    }
}
