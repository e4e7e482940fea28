//! The one error type every newtype parser returns, so the HTTP layer can turn any of them into
//! a field-level 422 without knowing which rule failed.

/// Why a value was refused. `kind` is a stable machine-readable code (it becomes the `type` of a
/// 422 item); `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub kind: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn too_short(min: usize) -> Self {
        Self::new(
            "string_too_short",
            format!("String should have at least {min} characters"),
        )
    }

    pub fn too_long(max: usize) -> Self {
        Self::new(
            "string_too_long",
            format!("String should have at most {max} characters"),
        )
    }
}

/// Checks a character count (not bytes: passwords and names are Unicode) against a range.
pub fn check_char_len(value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n < min {
        return Err(Invalid::too_short(min));
    }
    if n > max {
        return Err(Invalid::too_long(max));
    }
    Ok(())
}

/// Text that is stored must not contain NUL: PostgreSQL cannot store it in a text column.
pub fn check_no_nul(value: &str) -> Result<(), Invalid> {
    if value.contains('\0') {
        return Err(Invalid::new(
            "string_pattern_mismatch",
            "String must not contain NUL characters",
        ));
    }
    Ok(())
}
