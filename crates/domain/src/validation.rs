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

/// Characters that display as nothing, or change how their neighbours display: controls (Cc),
/// every Default_Ignorable_Code_Point (zero-width spaces and joiners, bidi controls, soft
/// hyphen, variation selectors, tags, Hangul fillers, …), the other format characters (Cf),
/// line and paragraph separators, and the Braille blank. Text an identity depends on must not
/// carry them: `ad\u{200B}a@example.com` displays as `ada@example.com`.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Default_Ignorable_Code_Point (DerivedCoreProperties.txt).
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
                // The other format characters (Cf).
                | '\u{0600}'..='\u{0605}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{FFF9}'..='\u{FFFB}'
                // Line and paragraph separators; the Braille pattern blank.
                | '\u{2028}'..='\u{2029}'
                | '\u{2800}'
        )
}
