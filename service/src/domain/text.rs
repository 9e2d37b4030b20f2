//! The rules every piece of user text shares: lengths counted in Unicode code points (100 × 😀
//! is 100 characters) and no NUL character, which PostgreSQL cannot store in `text`.

use crate::ServiceError;

/// Accepts `text` unchanged when it is `min..=max` code points long and holds no NUL.
pub(crate) fn bounded(
    field: &'static str,
    text: String,
    min: usize,
    max: usize,
) -> Result<String, ServiceError> {
    if text.contains('\0') {
        return Err(ServiceError::validation(
            field,
            "must not contain the NUL character",
        ));
    }
    let length = text.chars().count();
    if !(min..=max).contains(&length) {
        return Err(ServiceError::validation(
            field,
            format!("must be {min} to {max} characters long (it is {length})"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_code_points_not_bytes() {
        let hundred_emoji = "😀".repeat(100);
        assert!(bounded("name", hundred_emoji, 1, 100).is_ok());
        assert!(bounded("name", "😀".repeat(101), 1, 100).is_err());
    }

    #[test]
    fn the_nul_character_is_refused_and_the_field_is_named() {
        let error = bounded("name", "a\0b".into(), 1, 10).unwrap_err();
        assert!(
            matches!(error, ServiceError::Validation { field: "name", ref message } if message.contains("NUL")),
            "{error:?}"
        );
    }

    #[test]
    fn accepted_text_is_kept_exactly_as_sent() {
        assert_eq!(
            bounded("name", "  Mixed Case ".into(), 1, 20).unwrap(),
            "  Mixed Case "
        );
    }
}
