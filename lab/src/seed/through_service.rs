//! The service writer: a [`DataSet`] written one operation at a time through `service::ops` —
//! `register` and `deposit` for each user, `create_product`, `create_conversation` and then
//! `post_message` for its messages — each its own transaction, with the validation and the side
//! effects of a request (an account opened at registration, a token of which only the hash is
//! stored). It sends no SQL of its own.
//!
//! It is for small sets that must be exactly what the application makes (the first-run demo
//! data): a round trip or more per row. And it writes only what the operations can make, so it
//! refuses a set with a product without stock, drawn messages (they are for the bulk writer) or
//! orders (placing one moves money and stock, which the description does not account for).

use sea_orm::DatabaseConnection;
use service::{
    ServiceError,
    domain::{
        chat::{NewConversation, NewMessage},
        money::Money,
        products::NewProduct,
        users::NewUser,
    },
    ops,
};

use super::{DataSet, SeededIds};

/// What the writer created, and what only it can know.
#[derive(Debug, Clone)]
pub struct Registered {
    pub ids: SeededIds,
    /// Each user's API token, by position. Shown only now: only its hash is stored.
    pub tokens: Vec<String>,
    /// Each user's balance once their money was deposited.
    pub balances: Vec<Money>,
}

fn no_stock() -> ServiceError {
    ServiceError::validation(
        "stock",
        "the application creates every product with its stock",
    )
}

/// Writes `set` through the service operations, refusing before it writes anything a set it
/// cannot write.
pub async fn write(db: &DatabaseConnection, set: &DataSet) -> Result<Registered, ServiceError> {
    set.check()?;
    if set.products.iter().any(|p| p.stock.is_none()) {
        return Err(no_stock());
    }
    if set.drawn_messages.as_ref().is_some_and(|d| d.count > 0) {
        return Err(ServiceError::validation(
            "messages",
            "drawn messages are written by the bulk writer",
        ));
    }
    if !set.orders.is_empty() {
        return Err(ServiceError::validation(
            "orders",
            "orders are placed by their buyers, which moves money and stock",
        ));
    }

    let mut ids = SeededIds::default();
    let mut tokens = Vec::with_capacity(set.users.len());
    let mut balances = Vec::with_capacity(set.users.len());
    for user in &set.users {
        let registered = ops::users::register(
            db,
            NewUser {
                username: user.username.clone(),
                email: user.email.clone(),
                display_name: Some(user.display_name.clone()),
            },
        )
        .await?;
        let id = registered.user.id;
        // Registration opens the account empty, and a deposit must be more than nothing.
        let balance = if user.balance == Money::ZERO {
            Money::ZERO
        } else {
            ops::money::deposit(db, id, user.balance, None).await?
        };
        ids.users.push(id);
        tokens.push(registered.token);
        balances.push(balance);
    }

    for product in &set.products {
        let stock = product.stock.ok_or_else(no_stock)?;
        let created = ops::products::create_product(
            db,
            ids.users[product.seller],
            NewProduct {
                sku: product.sku.clone(),
                name: product.name.clone(),
                price: product.price,
                stock,
            },
        )
        .await?;
        ids.products.push(created.id);
    }

    // Each conversation's messages follow it, as people would write them. The set is small, so
    // looking its messages up by conversation costs nothing worth a map.
    let mut message_ids: Vec<Option<i64>> = vec![None; set.messages.len()];
    for (index, conversation) in set.conversations.iter().enumerate() {
        let created = ops::conversations::create_conversation(
            db,
            ids.users[conversation.creator],
            NewConversation {
                title: conversation.title.clone(),
                participant_ids: conversation.others.iter().map(|&u| ids.users[u]).collect(),
                product_id: conversation.product.map(|p| ids.products[p]),
            },
        )
        .await?;
        ids.conversations.push(created.id);
        for (position, message) in set.messages.iter().enumerate() {
            if message.conversation != index {
                continue;
            }
            // `check` put the message it answers earlier in this conversation: posted already.
            let reply_to_id = message.reply_to.and_then(|replied| message_ids[replied]);
            let posted = ops::messages::post_message(
                db,
                ids.users[message.sender],
                created.id,
                NewMessage {
                    body: message.body.clone(),
                    reply_to_id,
                },
            )
            .await?;
            message_ids[position] = Some(posted.id);
        }
    }
    ids.messages = message_ids.into_iter().flatten().collect();

    Ok(Registered {
        ids,
        tokens,
        balances,
    })
}
