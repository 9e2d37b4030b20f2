//! The demo data `serve` loads the first time it meets an empty database, so that `cargo run`
//! on a fresh machine has something to show: three users with funded accounts, products with
//! stock, and conversations with messages. Everything goes in through the service operations —
//! the same validation and transactions as a request — never through SQL of its own.
//!
//! A database counts as empty when it has no user. Tokens are shown once, when the users are
//! created: only their hashes are stored, so a later run cannot show them again and says how to
//! get a token of one's own instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use service::{
    domain::{
        chat::{MessageBody, NewConversation, NewMessage, Title},
        money::Money,
        products::{NewProduct, ProductName, Sku, Stock},
        users::{DisplayName, Email, NewUser, Username},
    },
    ops,
};

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

/// (username, display name, deposit)
const USERS: [(&str, &str, &str); 3] = [
    ("ann", "Ann Lee", "500.00"),
    ("bob", "Bob Martin", "250.00"),
    ("carol", "Carol Díaz", "100.00"),
];

/// (seller index, sku, name, price, stock)
const PRODUCTS: [(usize, &str, &str, &str, i64); 4] = [
    (1, "BIKE-ROAD-01", "Road bike, 56 cm", "120.00", 3),
    (1, "HELMET-M", "Cycling helmet (M)", "35.50", 10),
    (2, "LAMP-DESK", "Desk lamp", "18.00", 25),
    (2, "MUG-ENAMEL", "Enamel mug", "7.50", 40),
];

/// Loads the demo data set through the service operations.
pub async fn load(db: &DatabaseConnection) -> anyhow::Result<Demo> {
    let mut users = Vec::new();
    let mut ids = Vec::new();
    for (username, display_name, deposit) in USERS {
        let registered = ops::users::register(
            db,
            NewUser {
                username: Username::parse(username)?,
                email: Email::parse(format!("{username}@example.com"))?,
                display_name: Some(DisplayName::parse(display_name)?),
            },
        )
        .await
        .with_context(|| format!("registering demo user {username}"))?;
        let balance = ops::money::deposit(db, registered.user.id, Money::amount(deposit)?)
            .await
            .with_context(|| format!("funding demo user {username}"))?;
        ids.push(registered.user.id);
        users.push(DemoUser {
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            balance: balance.to_string(),
            token: registered.token,
        });
    }
    let [ann, bob, carol] = [ids[0], ids[1], ids[2]];

    let mut product_ids = Vec::new();
    for (seller, sku, name, price, stock) in PRODUCTS {
        let product = ops::products::create_product(
            db,
            ids[seller],
            NewProduct {
                sku: Sku::parse(sku)?,
                name: ProductName::parse(name)?,
                price: Money::price(price)?,
                stock: Stock::new(stock)?,
            },
        )
        .await
        .with_context(|| format!("creating demo product {sku}"))?;
        product_ids.push(product.id);
    }
    let bike = product_ids[0];

    let conversations = [
        (
            ann,
            "About the road bike",
            vec![bob],
            Some(bike),
            vec![
                (ann, "Hi Bob! Is the road bike still for sale?"),
                (bob, "It is. Want to try it on Saturday?"),
                (ann, "Saturday morning works 🚲"),
            ],
        ),
        (
            carol,
            "Saturday ride",
            vec![ann, bob],
            None,
            vec![
                (
                    carol,
                    "Who's in for a ride on Saturday? Meet at the \"old\" bridge.",
                ),
                (bob, "Me! I'll bring a spare helmet."),
            ],
        ),
        (
            bob,
            "Lamp for the workshop",
            vec![carol],
            Some(product_ids[2]),
            vec![(bob, "Does the desk lamp take E27 bulbs?")],
        ),
    ];
    let mut conversation_ids = Vec::new();
    for (creator, title, others, product_id, messages) in conversations {
        let conversation = ops::conversations::create_conversation(
            db,
            creator,
            NewConversation {
                title: Title::parse(title)?,
                participant_ids: others,
                product_id,
            },
        )
        .await
        .with_context(|| format!("starting demo conversation {title:?}"))?;
        let mut previous = None;
        for (sender, body) in messages {
            let message = ops::messages::post_message(
                db,
                sender,
                conversation.id,
                NewMessage {
                    body: MessageBody::parse(body)?,
                    reply_to_id: previous,
                },
            )
            .await
            .with_context(|| format!("posting to demo conversation {title:?}"))?;
            previous = Some(message.id);
        }
        conversation_ids.push(conversation.id);
    }

    Ok(Demo {
        users,
        conversation_ids,
        product_to_order: bike,
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
