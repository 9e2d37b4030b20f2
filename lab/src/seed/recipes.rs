//! The data sets, each made the same way every time from its inputs:
//!
//! - [`first_run`]: what `serve` loads into an empty database — three users with money,
//!   products with stock, three conversations with messages. Fixed content.
//! - [`demo`]: `size` rows of every relation the loading strategies compare (1-N, N-1, M-N, 1-1
//!   with gaps, self-referential, nested), in a fixed pattern, so that every question has a
//!   non-trivial answer and each strategy sends a number of statements that depends on `size`
//!   alone.
//! - [`generated`]: the sized sets of `mercado seed` and the benchmarks, drawn from a seeded
//!   random generator.
//!
//! Recipes touch no database: they only describe.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rust_decimal::Decimal;
use service::{
    ServiceError,
    domain::{
        chat::{MessageBody, Title},
        money::Money,
        orders::Quantity,
        products::{ProductName, Sku, Stock},
        users::{DisplayName, Email, Username},
    },
};

use super::{
    ConversationSpec, DataSet, DrawnMessages, MessageSpec, OrderSpec, ProductSpec, SeedSizes,
    UserSpec,
};

/// A constant of a recipe as money. A recipe's amounts are valid by construction; a bad one is
/// reported like any other invalid input rather than panicking.
fn money(field: &'static str, cents: i64) -> Result<Money, ServiceError> {
    Money::try_from(Decimal::new(cents, 2))
        .map_err(|error| ServiceError::validation(field, error.to_string()))
}

fn user(
    username: String,
    email: String,
    display_name: String,
    balance: Money,
) -> Result<UserSpec, ServiceError> {
    Ok(UserSpec {
        username: Username::parse(username)?,
        email: Email::parse(email)?,
        display_name: DisplayName::parse(display_name)?,
        balance,
    })
}

// ---------------------------------------------------------------------------------------------
// The first run.

/// (username, display name, balance)
const FIRST_RUN_USERS: [(&str, &str, &str); 3] = [
    ("ann", "Ann Lee", "500.00"),
    ("bob", "Bob Martin", "250.00"),
    ("carol", "Carol Díaz", "100.00"),
];

/// (seller, sku, name, price, stock)
const FIRST_RUN_PRODUCTS: [(usize, &str, &str, &str, i64); 4] = [
    (1, "BIKE-ROAD-01", "Road bike, 56 cm", "120.00", 3),
    (1, "HELMET-M", "Cycling helmet (M)", "35.50", 10),
    (2, "LAMP-DESK", "Desk lamp", "18.00", 25),
    (2, "MUG-ENAMEL", "Enamel mug", "7.50", 40),
];

/// (creator, title, others, product, messages as (sender, body)); each message answers the one
/// before it in its conversation.
type FirstRunConversation = (
    usize,
    &'static str,
    &'static [usize],
    Option<usize>,
    &'static [(usize, &'static str)],
);

const FIRST_RUN_CONVERSATIONS: [FirstRunConversation; 3] = [
    (
        0,
        "About the road bike",
        &[1],
        Some(0),
        &[
            (0, "Hi Bob! Is the road bike still for sale?"),
            (1, "It is. Want to try it on Saturday?"),
            (0, "Saturday morning works 🚲"),
        ],
    ),
    (
        2,
        "Saturday ride",
        &[0, 1],
        None,
        &[
            (
                2,
                "Who's in for a ride on Saturday? Meet at the \"old\" bridge.",
            ),
            (1, "Me! I'll bring a spare helmet."),
        ],
    ),
    (
        1,
        "Lamp for the workshop",
        &[2],
        Some(2),
        &[(1, "Does the desk lamp take E27 bulbs?")],
    ),
];

/// The first-run demo data: ann, bob and carol with money in their accounts, bob and carol
/// selling two products each, and three conversations with replies.
pub fn first_run() -> Result<DataSet, ServiceError> {
    let mut set = DataSet::default();
    for (username, display_name, balance) in FIRST_RUN_USERS {
        set.users.push(user(
            username.to_owned(),
            format!("{username}@example.com"),
            display_name.to_owned(),
            Money::amount(balance)?,
        )?);
    }
    for (seller, sku, name, price, stock) in FIRST_RUN_PRODUCTS {
        set.products.push(ProductSpec {
            seller,
            sku: Sku::parse(sku)?,
            name: ProductName::parse(name)?,
            price: Money::price(price)?,
            stock: Some(Stock::new(stock)?),
        });
    }
    for (conversation, (creator, title, others, product, messages)) in
        FIRST_RUN_CONVERSATIONS.into_iter().enumerate()
    {
        set.conversations.push(ConversationSpec {
            title: Title::parse(title)?,
            creator,
            others: others.to_vec(),
            product,
        });
        let first = set.messages.len();
        for (offset, &(sender, body)) in messages.iter().enumerate() {
            set.messages.push(MessageSpec {
                conversation,
                sender,
                reply_to: offset.checked_sub(1).map(|previous| first + previous),
                body: MessageBody::parse(body)?,
            });
        }
    }
    Ok(set)
}

// ---------------------------------------------------------------------------------------------
// The loading demo.

const DEMO_NAMES: [&str; 10] = [
    "alice", "bruno", "chloe", "dmitri", "elena", "farid", "greta", "hiro", "ines", "jonas",
];

/// `size` (at least 2) users with empty accounts; `size` products, product i sold by user i at
/// 10.00 + 2.50 × i, every other one (the even ones) with stock; `size` conversations, i about
/// product i between user i and user i + 1, each with an opening message and two replies to
/// it; and 0, 1 or 2 orders per user (i % 3) of one or two lines each.
pub fn demo(size: usize) -> Result<DataSet, ServiceError> {
    let size = size.max(2);
    let tag = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
    let name_of = |i: usize| {
        format!(
            "{}{}_{tag}",
            DEMO_NAMES[i % DEMO_NAMES.len()],
            i / DEMO_NAMES.len()
        )
    };
    let partner = |i: usize| (i + 1) % size;
    let mut set = DataSet::default();
    for i in 0..size {
        set.users.push(user(
            name_of(i),
            format!("{}@example.com", name_of(i)),
            format!("Demo user {i}"),
            Money::ZERO,
        )?);
        let stock = (i % 2 == 0)
            .then(|| Stock::new(10 * (i as i64 + 1)))
            .transpose()?;
        set.products.push(ProductSpec {
            seller: i,
            sku: Sku::parse(format!("DEMO-{tag}-{i}"))?,
            name: ProductName::parse(format!("Product {i}"))?,
            price: money("price", 1000 + 250 * i as i64)?,
            stock,
        });
        set.conversations.push(ConversationSpec {
            title: Title::parse(format!("About product {i}"))?,
            creator: i,
            others: vec![partner(i)],
            product: Some(i),
        });
        set.messages.push(MessageSpec {
            conversation: i,
            sender: i,
            reply_to: None,
            body: MessageBody::parse(format!("Is product {i} still available?"))?,
        });
    }
    // The replies come after every opener, so the openers go in one statement and the replies
    // in the next.
    for i in 0..size {
        for (sender, body) in [
            (partner(i), format!("Yes, product {i} is available.")),
            (i, "Great, ordering now.".to_owned()),
        ] {
            set.messages.push(MessageSpec {
                conversation: i,
                sender,
                reply_to: Some(i),
                body: MessageBody::parse(body)?,
            });
        }
    }
    // User i places i % 3 orders; order k of user i buys products i+k … i+2k, one of each.
    let one = Quantity::new(1)?;
    for i in 0..size {
        for k in 0..i % 3 {
            set.orders.push(OrderSpec {
                buyer: i,
                lines: (0..=k).map(|line| ((i + k + line) % size, one)).collect(),
            });
        }
    }
    Ok(set)
}

// ---------------------------------------------------------------------------------------------
// Sized and generated.

const PRODUCT_NAMES: &[&str] = &[
    "Lamp", "Kettle", "Bicycle", "Guitar", "Backpack", "Chair", "Camera", "Teapot", "Clock",
    "Notebook",
];

const WORDS: &[&str] = &[
    "hello",
    "is",
    "this",
    "still",
    "available",
    "price",
    "shipping",
    "tomorrow",
    "thanks",
    "great",
    "how",
    "about",
    "deal",
    "pick",
    "up",
    "today",
    "can",
    "you",
    "send",
    "photo",
];

/// Every generated account starts with this much money: 1000.00.
const OPENING_BALANCE_CENTS: i64 = 100_000;

fn check_sizes(sizes: &SeedSizes) -> Result<(), ServiceError> {
    let needs_users = sizes.products > 0 || sizes.conversations > 0;
    if needs_users && sizes.users == 0 {
        return Err(ServiceError::validation(
            "users",
            "products and conversations need users",
        ));
    }
    if sizes.messages > 0 && sizes.conversations == 0 {
        return Err(ServiceError::validation(
            "conversations",
            "messages need conversations",
        ));
    }
    Ok(())
}

/// An index into a non-empty list of `len`, chosen at random (callers check non-emptiness).
fn pick(rng: &mut StdRng, len: usize) -> usize {
    rng.random_range(0..len)
}

/// `sizes` rows tagged `tag` (`seed-<tag>-…` usernames, `SEED-<tag>-…` SKUs, `Seed <tag> #…`
/// titles, so that one database can hold several seeds): users with 1000.00 each, products at
/// random prices and stock sold by random users, conversations between one or two random users
/// (three in ten about a product), and messages drawn into random conversations from their
/// participants. `seed_value` fixes every random choice.
pub fn generated(sizes: SeedSizes, seed_value: u64, tag: &str) -> Result<DataSet, ServiceError> {
    check_sizes(&sizes)?;
    let mut rng = StdRng::seed_from_u64(seed_value);
    let users = sizes.users as usize;
    let balance = money("balance", OPENING_BALANCE_CENTS)?;
    let mut set = DataSet::default();
    for i in 0..users {
        let username = format!("seed-{tag}-{i}");
        let email = format!("{username}@seed.example");
        set.users
            .push(user(username, email, format!("Seed user {i}"), balance)?);
    }

    // The draws come in this order (every seller and price, then every stock, then every
    // conversation's members, then every product it is about), so a seed value gives the same
    // content as it always has.
    let sellers_and_prices: Vec<(usize, i64)> = (0..sizes.products)
        .map(|_| (pick(&mut rng, users), rng.random_range(100..=50_000)))
        .collect();
    // i32, as always: sampling another integer type would draw other numbers.
    let stock: Vec<i32> = (0..sizes.products)
        .map(|_| rng.random_range(10..=1_000))
        .collect();
    for (i, ((seller, cents), stock)) in sellers_and_prices.into_iter().zip(stock).enumerate() {
        set.products.push(ProductSpec {
            seller,
            sku: Sku::parse(format!("SEED-{tag}-{i}"))?,
            name: ProductName::parse(format!("{} {i}", PRODUCT_NAMES[i % PRODUCT_NAMES.len()]))?,
            price: money("price", cents)?,
            stock: Some(Stock::new(i64::from(stock))?),
        });
    }

    let members: Vec<(usize, usize)> = (0..sizes.conversations)
        .map(|_| (pick(&mut rng, users), pick(&mut rng, users)))
        .collect();
    let products = set.products.len();
    let about: Vec<Option<usize>> = (0..sizes.conversations)
        .map(|_| (products > 0 && rng.random_bool(0.3)).then(|| pick(&mut rng, products)))
        .collect();
    for (i, ((creator, other), product)) in members.into_iter().zip(about).enumerate() {
        set.conversations.push(ConversationSpec {
            title: Title::parse(format!("Seed {tag} #{i}"))?,
            creator,
            others: if other == creator {
                Vec::new()
            } else {
                vec![other]
            },
            product,
        });
    }

    set.drawn_messages = Some(DrawnMessages {
        count: sizes.messages,
        rng,
    });
    Ok(set)
}

impl DrawnMessages {
    /// The messages, in the order they are written: for each, a conversation of
    /// `conversations` at random, one of its participants, and a body of 3 to 15 words. Each
    /// call starts from the beginning again.
    pub fn draw<'a>(
        &self,
        conversations: &'a [ConversationSpec],
    ) -> impl Iterator<Item = Result<MessageSpec, ServiceError>> + 'a {
        let mut rng = self.rng.clone();
        let members: Vec<Vec<usize>> = conversations
            .iter()
            .map(ConversationSpec::participants)
            .collect();
        (0..self.count).map(move |_| {
            let conversation = pick(&mut rng, members.len());
            let members = &members[conversation];
            let sender = members[pick(&mut rng, members.len())];
            Ok(MessageSpec {
                conversation,
                sender,
                reply_to: None,
                body: MessageBody::parse(sentence(&mut rng))?,
            })
        })
    }
}

/// A short message body of 3 to 15 words.
fn sentence(rng: &mut StdRng) -> String {
    let words = rng.random_range(3..=15);
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recipe_makes_a_set_that_passes_its_own_check() {
        let sets = [
            first_run().unwrap(),
            demo(7).unwrap(),
            generated(SeedSizes::default(), 42, "0badcafe").unwrap(),
        ];
        for set in sets {
            set.check().unwrap();
        }
    }

    #[test]
    fn a_seed_value_always_draws_the_same_messages() {
        let sizes = SeedSizes {
            users: 5,
            conversations: 4,
            messages: 50,
            products: 3,
        };
        let bodies = |seed_value| -> Vec<String> {
            let set = generated(sizes, seed_value, "tag").unwrap();
            let drawn = set.drawn_messages.as_ref().unwrap();
            drawn
                .draw(&set.conversations)
                .map(|m| m.unwrap().body.into_inner())
                .collect()
        };
        assert_eq!(bodies(7), bodies(7));
        assert_ne!(bodies(7), bodies(8));
    }

    #[test]
    fn the_demo_set_has_three_messages_per_conversation_and_replies_to_the_first() {
        let set = demo(4).unwrap();
        assert_eq!(set.messages.len(), 12);
        for (index, message) in set.messages.iter().enumerate().skip(4) {
            assert_eq!(
                message.reply_to,
                Some(message.conversation),
                "message {index}"
            );
        }
        // Users 0 to 3 place 0, 1, 2 and 0 orders.
        assert_eq!(set.orders.len(), 3);
    }

    #[test]
    fn a_reply_to_another_conversation_is_refused() {
        let mut set = demo(3).unwrap();
        set.messages[4].reply_to = Some(1);
        let refused = set.check().unwrap_err();
        assert!(
            matches!(
                refused,
                ServiceError::Validation {
                    field: "reply_to_id",
                    ..
                }
            ),
            "{refused:?}"
        );
    }
}
