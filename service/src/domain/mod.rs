//! The domain's vocabulary: input newtypes that refuse bad values at construction ("parse,
//! don't validate"), and the plain output types operations return. Entities never leave the
//! service crate; these types do.

pub mod chat;
pub mod money;
pub mod orders;
pub mod products;
pub(crate) mod text;
pub mod users;
