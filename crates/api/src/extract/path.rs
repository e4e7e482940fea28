use actix_web::HttpRequest;

use crate::error::{ApiError, FieldError, LocItem};

/// A positive integer id from the path (`/keys/{key_id}`), or a 422 naming the parameter.
pub fn path_id(req: &HttpRequest, name: &str) -> Result<i64, ApiError> {
    let loc = || vec![LocItem::from("path"), LocItem::from(name)];
    let raw = req.match_info().get(name).unwrap_or_default();
    let id: i64 = raw.parse().map_err(|_| {
        ApiError::validation(FieldError::new(
            loc(),
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        ))
    })?;
    if id < 1 {
        return Err(ApiError::validation(FieldError::new(
            loc(),
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        )));
    }
    Ok(id)
}
