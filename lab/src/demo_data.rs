//! What `serve` does the first time it meets an empty database, so that `cargo run` on a fresh
//! machine has something to show: it loads the first-run data set
//! ([`crate::seed::recipes::first_run`]: three users with funded accounts, products with stock,
//! conversations with messages) through the service operations
//! ([`crate::seed::through_service`]: the same validation and transactions as a request, never
//! SQL of its own), and prints a welcome with each user's token.
//!
//! A database counts as empty when it has no user (asked through `service::ops`). Tokens are
//! shown once, when the users are created: only their hashes are stored, so a later run cannot
//! show them again and says how to get a token of one's own instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::seed::{recipes, through_service};

/// A demo user and the token to call the API as them.
#[derive(Debug)]
pub struct DemoUser {
    pub username: String,
    pub display_name: String,
    pub balance: String,
    pub token: String,
}

/// What was loaded, for the welcome message.
#[derive(Debug)]
pub struct Demo {
    pub users: Vec<DemoUser>,
    pub conversation_ids: Vec<i64>,
    /// A product with stock that the first user does not sell, to order in the example.
    pub product_to_order: i64,
}

/// Whether the database has no user yet.
pub async fn is_empty(db: &DatabaseConnection) -> anyhow::Result<bool> {
    let exists = service::ops::users::any_user_exists(db)
        .await
        .context("checking whether the database has users")?;
    Ok(!exists)
}

/// Loads the first-run data set through the service operations.
pub async fn load(db: &DatabaseConnection) -> anyhow::Result<Demo> {
    let set = recipes::first_run().context("describing the demo data set")?;
    let written = through_service::write(db, &set)
        .await
        .context("writing the demo data set")?;
    let users = set
        .users
        .iter()
        .zip(written.tokens)
        .zip(&written.balances)
        .map(|((user, token), balance)| DemoUser {
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            balance: balance.to_string(),
            token,
        })
        .collect();
    let to_order = set.products.iter().position(|product| {
        product.seller != 0 && product.stock.is_some_and(|stock| stock.get() > 0)
    });
    let product_to_order = to_order
        .and_then(|index| written.ids.products.get(index).copied())
        .context("the demo data set has no product for its first user to order")?;
    Ok(Demo {
        users,
        conversation_ids: written.ids.conversations,
        product_to_order,
    })
}

/// The address to show in URLs: an unspecified one (`0.0.0.0`, `::`) is reached on loopback.
pub fn base_url(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

/// The welcome message after loading: each demo user's token and commands to try.
pub fn welcome(demo: &Demo, base: &str) -> String {
    let mut text = String::from(
        "\nLoaded the demo data set (the database had no users). Demo users and their tokens \
         (shown this once; only their hashes are stored):\n\n",
    );
    for user in &demo.users {
        text.push_str(&format!(
            "  {:<6} {:<12} balance {:>7}  token {}\n",
            user.username, user.display_name, user.balance, user.token
        ));
    }
    let Some(ann) = demo.users.first() else {
        return text;
    };
    let token = &ann.token;
    let conversation = demo.conversation_ids.first().copied().unwrap_or(1);
    let auth = format!("-H 'Authorization: Bearer {token}'");
    let json = "-H 'Content-Type: application/json'";
    text.push_str(&format!(
        "\nTry, as {name}:\n\n\
         curl {auth} {base}/me\n\
         curl {auth} {base}/conversations\n\
         curl {auth} '{base}/conversations/{conversation}/messages?limit=2'\n\
         curl {auth} {json} -d '{{\"body\": \"Deal! See you Saturday.\"}}' {base}/conversations/{conversation}/messages\n\
         curl '{base}/products?q=bike'\n\
         curl {auth} {json} -d '{{\"items\": [{{\"product_id\": {product}, \"quantity\": 1}}]}}' {base}/orders\n\
         curl {base}/openapi.json\n",
        name = ann.username,
        product = demo.product_to_order,
    ));
    text
}

/// What to do when no demo data was loaded (`why` says why not): tokens come from creating a
/// user.
pub fn how_to_get_a_token(why: &str, base: &str) -> String {
    format!(
        "\n{why} To call the API, create a user; the response holds its token (shown only \
         then):\n\n\
         curl -H 'Content-Type: application/json' -d '{{\"username\": \"you\", \"email\": \"you@example.com\"}}' {base}/users\n\
         curl -H 'Authorization: Bearer <token>' {base}/me\n"
    )
}

#[cfg(test)]
mod tests {
    use mercado_testkit::{TestDb, backend_tests};
    use service::ops;

    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_shown_as_loopback() {
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(base_url(any), "http://127.0.0.1:8000");
        assert_eq!(base_url(local), "http://127.0.0.1:9000");
    }

    backend_tests! {
        async fn the_demo_data_fills_an_empty_database_and_the_welcome_shows_every_token(
            db: TestDb
        ) -> anyhow::Result<()> {
            assert!(is_empty(&db.conn).await?);

            let demo = load(&db.conn).await?;

            assert!(!is_empty(&db.conn).await?);
            let welcome = welcome(&demo, "http://127.0.0.1:8000");
            for user in &demo.users {
                assert!(welcome.contains(&user.token), "{welcome}");
                let me = ops::users::authenticate(&db.conn, &user.token).await?;
                let profile = ops::users::profile(&db.conn, me.id).await?;
                assert_eq!(profile.balance.to_string(), user.balance);
            }
            assert!(welcome.contains("http://127.0.0.1:8000/conversations\n"), "{welcome}");
            let ann = ops::users::authenticate(&db.conn, &demo.users[0].token).await?;
            let conversations = ops::conversations::list_conversations(&db.conn, ann.id).await?;
            assert_eq!(conversations.len(), 2);
            assert!(conversations.iter().all(|c| c.last_message.is_some()));
            let bike = ops::products::get_product(&db.conn, demo.product_to_order).await?;
            assert!(bike.stock > 0);
            Ok(())
        }
    }
}
