use morpheus_domain::validation::Invalid;

use super::{ApiError, FieldError};

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
}

impl From<Fields> for ApiError {
    fn from(f: Fields) -> Self {
        ApiError::Validation(f.0)
    }
}
