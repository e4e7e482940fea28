//! Turns serde errors into FastAPI-style validation items, without leaking Rust type names.

use crate::error::{FieldError, LocItem};

/// Converts a path-tracked deserialisation error into a 422 item under `root` ("body",
/// "query").
pub fn field_error<E: std::fmt::Display>(
    root: &str,
    error: serde_path_to_error::Error<E>,
) -> FieldError {
    let mut loc = vec![LocItem::from(root)];
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                loc.push(LocItem::Index(i64::try_from(*index).unwrap_or(i64::MAX)));
            }
            serde_path_to_error::Segment::Map { key } => loc.push(LocItem::Name(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                loc.push(LocItem::Name(variant.clone()));
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    classify(loc, &error.inner().to_string())
}

/// serde's messages look like "missing field `email` at line 1 column 2"; pick out the field
/// and say it in words a client understands.
fn classify(mut loc: Vec<LocItem>, message: &str) -> FieldError {
    let message = strip_position(message);
    // The tracked path already ends at an unknown or duplicate key, but not at a missing one.
    let push_field = |loc: &mut Vec<LocItem>, field: String| {
        if loc.last() != Some(&LocItem::Name(field.clone())) {
            loc.push(LocItem::Name(field));
        }
    };
    if let Some(field) = backticked_after(message, "missing field ") {
        push_field(&mut loc, field);
        return FieldError::new(loc, "missing", "Field required");
    }
    if let Some(field) = backticked_after(message, "unknown field ") {
        push_field(&mut loc, field);
        return FieldError::new(loc, "extra_forbidden", "Extra inputs are not permitted");
    }
    if let Some(field) = backticked_after(message, "duplicate field ") {
        push_field(&mut loc, field);
        return FieldError::new(loc, "value_error", "Field given more than once");
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let expected = message.rsplit("expected ").next().unwrap_or_default();
        let (kind, msg) = if expected.contains("string") {
            ("string_type", "Input should be a valid string")
        } else if expected.contains("bool") {
            ("bool_type", "Input should be a valid boolean")
        } else if expected.starts_with('i')
            || expected.starts_with('u')
            || expected.contains("integer")
        {
            ("int_type", "Input should be a valid integer")
        } else if expected.contains("sequence") {
            ("list_type", "Input should be a valid list")
        } else if expected.contains("struct") || expected.contains("map") {
            ("model_attributes_type", "Input should be a valid object")
        } else {
            ("value_error", "Input has the wrong type")
        };
        return FieldError::new(loc, kind, msg);
    }
    if message.contains("number out of range") {
        return FieldError::new(loc, "int_parsing", "Input should be a valid integer");
    }
    if message.starts_with("input contains invalid characters")
        || message.starts_with("premature end of input")
        || message.starts_with("trailing input")
    {
        return FieldError::new(loc, "datetime_parsing", "Input should be a valid datetime");
    }
    FieldError::new(loc, "value_error", "Input is not valid")
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

fn backticked_after(message: &str, lead: &str) -> Option<String> {
    let rest = message.strip_prefix(lead)?;
    let rest = rest.strip_prefix('`')?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: Option<i64>,
        tags: Option<Vec<String>>,
    }

    fn error_for(json: &str) -> FieldError {
        let mut de = serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, Body>(&mut de).unwrap_err();
        field_error("body", err)
    }

    fn names(loc: &[LocItem]) -> Vec<String> {
        loc.iter()
            .map(|l| match l {
                LocItem::Name(n) => n.clone(),
                LocItem::Index(i) => i.to_string(),
            })
            .collect()
    }

    #[test]
    fn missing_unknown_and_wrongly_typed_fields_are_located() {
        let e = error_for("{}");
        assert_eq!(
            (names(&e.loc), e.kind.as_str()),
            (vec!["body".into(), "email".into()], "missing")
        );
        let e = error_for(r#"{"email":"a","role":"admin"}"#);
        assert_eq!(names(&e.loc), ["body", "role"]);
        assert_eq!(e.kind, "extra_forbidden");
        let e = error_for(r#"{"email":5}"#);
        assert_eq!(
            (names(&e.loc), e.kind.as_str()),
            (vec!["body".into(), "email".into()], "string_type")
        );
        let e = error_for(r#"{"email":"a","age":"x"}"#);
        assert_eq!(e.kind, "int_type");
        let e = error_for(r#"{"email":"a","tags":["x",3]}"#);
        assert_eq!(names(&e.loc), ["body", "tags", "1"]);
        let e = error_for(r#""text""#);
        assert_eq!(e.kind, "model_attributes_type");
        assert!(
            !e.msg.contains("Body"),
            "leaks the Rust type name: {}",
            e.msg
        );
    }
}
