//! Users as the rest of the application sees them, and the inputs that create them.

use chrono::{DateTime, Utc};

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
