//! Users as the rest of the application sees them, and the inputs that create them.

use chrono::{DateTime, Utc};

use super::{money::Money, text};
use crate::ServiceError;

/// The public face of a user, as shown next to their messages and conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub display_name: String,
}

/// A user as their own account sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

impl From<&entity::users::Model> for UserSummary {
    fn from(user: &entity::users::Model) -> Self {
        UserSummary {
            id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
        }
    }
}

impl From<entity::users::Model> for User {
    fn from(user: entity::users::Model) -> Self {
        User {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            created_at: user.created_at.to_utc(),
        }
    }
}

/// A username: 3 to 50 ASCII letters, digits, `_`, `.` or `-`. Kept as typed; compared by its
/// [canonical](Username::canonical) lower-case form, so `Ann` and `ann` are the same user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 50;

    pub fn parse(text: impl Into<String>) -> Result<Username, ServiceError> {
        let text = text::bounded("username", text.into(), Self::MIN_CHARS, Self::MAX_CHARS)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !text.chars().all(allowed) {
            return Err(ServiceError::validation(
                "username",
                "may contain only ASCII letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Username(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form the unique constraint compares.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// An email address: at most 255 characters with exactly one `@` and text on both sides. Kept as
/// typed; compared by its [canonical](Email::canonical) lower-case form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(text: impl Into<String>) -> Result<Email, ServiceError> {
        let text = text::bounded("email", text.into(), 1, Self::MAX_CHARS)?;
        let at_signs = text.matches('@').count();
        let well_formed = at_signs == 1
            && text
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        if !well_formed {
            return Err(ServiceError::validation(
                "email",
                "must hold exactly one '@' with text on both sides",
            ));
        }
        // A few characters grow when lower-cased (`İ` becomes two); the stored form must fit too.
        if text.to_lowercase().chars().count() > Self::MAX_CHARS {
            return Err(ServiceError::validation(
                "email",
                "must be at most 255 characters long, also in lower case",
            ));
        }
        Ok(Email(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form the unique constraint compares.
    pub fn canonical(&self) -> String {
        self.0.to_lowercase()
    }
}

/// The name shown for a user: 1 to 100 characters, kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(text: impl Into<String>) -> Result<DisplayName, ServiceError> {
        text::bounded("display_name", text.into(), 1, Self::MAX_CHARS).map(DisplayName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What registration needs. Without a display name, the username is shown.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub display_name: Option<DisplayName>,
}

/// A newly registered user and their API token. The token is shown this once: only its
/// SHA-256 hash is stored.
#[derive(Debug, Clone)]
pub struct Registered {
    pub user: User,
    pub token: String,
}

/// A user with their account's balance, as `GET /me` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user: User,
    pub balance: Money,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<impl std::fmt::Debug, ServiceError>, field: &str) {
        match result {
            Err(ServiceError::Validation { field: named, .. }) if named == field => {}
            other => panic!("expected a validation error naming {field}, got {other:?}"),
        }
    }

    #[test]
    fn usernames_of_3_to_50_allowed_characters_are_accepted() {
        for good in ["ann", "Ann.Lee-2_x", &"a".repeat(50)] {
            assert_eq!(Username::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn usernames_breaking_a_rule_are_refused() {
        for bad in [
            "",
            "an",
            &"a".repeat(51),
            "ann lee",
            "ann@x",
            "änn",
            "ann\0",
            "ann😀",
        ] {
            refused(Username::parse(bad), "username");
        }
    }

    #[test]
    fn a_username_is_compared_in_lower_case_but_kept_as_typed() {
        let name = Username::parse("Ann.Lee").unwrap();
        assert_eq!(name.as_str(), "Ann.Lee");
        assert_eq!(name.canonical(), "ann.lee");
    }

    #[test]
    fn emails_with_one_at_sign_and_text_on_both_sides_are_accepted() {
        for good in ["a@b", "Ann@Example.COM", "ünïcødé@exämple.org"] {
            assert_eq!(Email::parse(good).unwrap().as_str(), good);
        }
        let long = format!("{}@{}", "a".repeat(127), "b".repeat(127));
        assert!(Email::parse(long).is_ok());
    }

    #[test]
    fn emails_breaking_a_rule_are_refused() {
        let too_long = format!("{}@{}", "a".repeat(128), "b".repeat(127));
        let grows_in_lower_case = format!("{}@b", "İ".repeat(200));
        for bad in [
            "",
            "ann",
            "@x.io",
            "ann@",
            "a@b@c",
            "a\0@b",
            &too_long,
            &grows_in_lower_case,
        ] {
            refused(Email::parse(bad), "email");
        }
    }

    #[test]
    fn an_email_is_compared_in_lower_case_but_kept_as_typed() {
        let email = Email::parse("Ann@Example.COM").unwrap();
        assert_eq!(email.as_str(), "Ann@Example.COM");
        assert_eq!(email.canonical(), "ann@example.com");
    }

    #[test]
    fn display_names_are_1_to_100_characters_of_anything_but_nul() {
        assert!(DisplayName::parse("😀".repeat(100)).is_ok());
        assert_eq!(DisplayName::parse(" Ann ").unwrap().as_str(), " Ann ");
        refused(DisplayName::parse(""), "display_name");
        refused(DisplayName::parse("😀".repeat(101)), "display_name");
        refused(DisplayName::parse("a\0"), "display_name");
    }
}
