//! The data a load needs, arranged through the API, and a bounded closed-loop load of reads,
//! orders, deposits and transfers that records every request it sends, every write with an
//! `Idempotency-Key`; and the resending of the failed writes with their keys after the fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::REQUEST_TIMEOUT;

/// The client-side deadline of every request: Mercado's request timeout plus 2 s. A request
/// without an answer by then has hung, which fails the test.
pub const DEADLINE: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 2);

/// Money every load client starts with, in cents (orders and transfers never run out of it).
const START_BALANCE_CENTS: i64 = 10_000_000;
/// Stock of each product: the load never runs out of it, so an order fails only by a fault.
const START_STOCK: i64 = 1_000_000;
/// Products, with their prices in cents; all sold by one seller who is not a load client.
const PRODUCT_PRICES_CENTS: [i64; 4] = [125, 250, 75, 310];
/// Messages in the conversation the reads page through.
const MESSAGES: usize = 25;
/// After a failed request a client pauses this long before its next one, so that a server that
/// fails fast is not hammered in a tight loop (the figures count requests, not retries).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(25);
/// A failed keyed write is sent again at most this many times…
const RESEND_ATTEMPTS: u32 = 5;
/// …this long apart…
const RESEND_PAUSE: Duration = Duration::from_millis(250);
/// …and all the resending of one test stops after this long.
const RESEND_BUDGET: Duration = Duration::from_secs(20);

/// A user made through `POST /users`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
}

/// A product made through `POST /products`.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub price_cents: i64,
    pub initial_stock: i64,
}

/// Everything the load works on, made through the API before any fault.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub base_url: String,
    pub seller: User,
    pub clients: Vec<User>,
    pub products: Vec<Product>,
    pub conversation_id: i64,
    /// The deposits made while arranging, all acknowledged, each with a key of its own
    /// (`setup-c{client}`), so that every row of the ledger names the request that made it.
    pub setup_deposits: Vec<SetupDeposit>,
}

/// A deposit made while arranging.
#[derive(Debug, Clone)]
pub struct SetupDeposit {
    pub user: i64,
    pub key: String,
    pub cents: i64,
}

impl Fixture {
    /// Register a seller and `clients` buyers, fund each buyer, create the products with stock
    /// and one conversation of all the buyers with some messages.
    pub async fn arrange(base_url: &str, clients: usize) -> anyhow::Result<Fixture> {
        let http = Client::builder()
            .timeout(DEADLINE)
            .build()
            .context("building the setup client")?;
        let api = Api {
            http,
            base_url: base_url.to_owned(),
        };
        let seller = api.register("seller").await?;
        let mut buyers = Vec::with_capacity(clients);
        let mut setup_deposits = Vec::with_capacity(clients);
        for index in 0..clients {
            let user = api.register(&format!("client{index}")).await?;
            let key = format!("setup-c{index}");
            api.expect_ok(
                deposit_request(&api, &user, &key, START_BALANCE_CENTS),
                StatusCode::OK,
            )
            .await?;
            setup_deposits.push(SetupDeposit {
                user: user.id,
                key,
                cents: START_BALANCE_CENTS,
            });
            buyers.push(user);
        }
        let mut products = Vec::with_capacity(PRODUCT_PRICES_CENTS.len());
        for (index, price_cents) in PRODUCT_PRICES_CENTS.into_iter().enumerate() {
            let body = api
                .expect_ok(
                    api.post("/products", &seller.token).json(&json!({
                        "sku": format!("FAULT-{index}"),
                        "name": format!("Fault-tolerant widget {index}"),
                        "price": money(price_cents),
                        "stock": START_STOCK,
                    })),
                    StatusCode::CREATED,
                )
                .await?;
            products.push(Product {
                id: int(&body, "id")?,
                price_cents,
                initial_stock: int(&body, "stock")?,
            });
        }
        let first = buyers.first().context("a load needs at least one client")?;
        let participants: Vec<i64> = buyers.iter().map(|u| u.id).collect();
        let conversation = api
            .expect_ok(
                api.post("/conversations", &first.token).json(&json!({
                    "title": "Under load",
                    "participant_ids": participants,
                })),
                StatusCode::CREATED,
            )
            .await?;
        let conversation_id = int(&conversation, "id")?;
        for index in 0..MESSAGES {
            let author = &buyers[index % buyers.len()];
            api.expect_ok(
                api.post(
                    &format!("/conversations/{conversation_id}/messages"),
                    &author.token,
                )
                .json(&json!({ "body": format!("message {index}") })),
                StatusCode::CREATED,
            )
            .await?;
        }
        Ok(Fixture {
            base_url: base_url.to_owned(),
            seller,
            clients: buyers,
            products,
            conversation_id,
            setup_deposits,
        })
    }
}

/// The share of each kind of request in a load, as weights.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Mix {
    pub reads: u32,
    pub orders: u32,
    pub deposits: u32,
    pub transfers: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            reads: 40,
            orders: 30,
            deposits: 15,
            transfers: 15,
        }
    }
}

/// How much load: `clients` concurrent clients, each sending one request after the other (no
/// think time) until `duration` has passed or it has sent `max_requests_per_client`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadPlan {
    pub clients: usize,
    #[serde(serialize_with = "crate::report::secs")]
    pub duration: Duration,
    pub max_requests_per_client: usize,
    pub mix: Mix,
}

impl LoadPlan {
    /// 8 clients for `duration`, the default mix.
    pub fn new(duration: Duration) -> LoadPlan {
        LoadPlan {
            clients: 8,
            duration,
            max_requests_per_client: 20_000,
            mix: Mix::default(),
        }
    }
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Read,
    Order,
    Deposit,
    Transfer,
}

/// The write a request asked for, and what its answer said about it.
#[derive(Debug, Clone)]
pub enum Write {
    Order {
        buyer: i64,
        items: Vec<(i64, i64)>,
        id: Option<i64>,
        total_cents: Option<i64>,
    },
    Deposit {
        user: i64,
        cents: i64,
        /// The balance the answer said the deposit left.
        balance_cents: Option<i64>,
    },
    Transfer {
        from: i64,
        to: i64,
        cents: i64,
        id: Option<i64>,
        /// The sender's balance after, as the answer said.
        balance_cents: Option<i64>,
    },
}

impl Write {
    /// The user whose key it carries: the buyer, the depositor or the sender.
    pub fn user(&self) -> i64 {
        match self {
            Write::Order { buyer, .. } => *buyer,
            Write::Deposit { user, .. } => *user,
            Write::Transfer { from, .. } => *from,
        }
    }
}

/// What is known of a request's effect from its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: it happened.
    Acked,
    /// An answer other than 2xx, or no connection at all (so the request was never sent): it
    /// must have changed nothing.
    Refused,
    /// No answer (connection reset, refused, or the deadline passed): it may or may not have
    /// happened.
    Lost,
}

/// One request the load sent.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub client: usize,
    pub kind: Kind,
    /// The `Idempotency-Key` it carried (every write).
    pub key: Option<String>,
    /// When it was sent, from the start of the load.
    pub start: Duration,
    pub latency: Duration,
    pub status: Option<u16>,
    /// The problem's `code`, for an error answer.
    pub code: Option<String>,
    /// The transport error, when there was no answer.
    pub error: Option<String>,
    /// No answer before [`DEADLINE`].
    pub deadline_exceeded: bool,
    /// The connection could not be made (refused): the request never left the client.
    pub not_delivered: bool,
    /// The answer carried `Retry-After`.
    pub retry_after: bool,
    pub write: Option<Write>,
}

impl RequestRecord {
    /// Whether it was a write (order, deposit, transfer).
    pub fn is_write(&self) -> bool {
        self.write.is_some()
    }

    /// Whether it was acknowledged (2xx).
    pub fn acked(&self) -> bool {
        self.outcome() == Outcome::Acked
    }

    pub fn outcome(&self) -> Outcome {
        match self.status {
            Some(status) if (200..300).contains(&status) => Outcome::Acked,
            Some(_) => Outcome::Refused,
            None if self.not_delivered => Outcome::Refused,
            None => Outcome::Lost,
        }
    }

    /// When its answer (or its failure) came, from the start of the load.
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }

    /// The kind, user and key of a keyed write: what names its row in the database.
    pub fn keyed(&self) -> Option<(Kind, i64, &str)> {
        Some((self.kind, self.write.as_ref()?.user(), self.key.as_deref()?))
    }
}

/// A failed keyed write sent again with its key and body after the fault.
#[derive(Debug, Clone)]
pub struct Resend {
    pub kind: Kind,
    pub key: String,
    /// The user who sent it: the buyer, the depositor or the sender.
    pub user: i64,
    pub first: Outcome,
    pub attempts: u32,
    /// Whether an attempt was acknowledged (2xx).
    pub acknowledged: bool,
    /// The order or transfer id of the answer that acknowledged it (a deposit answers none).
    pub id: Option<i64>,
    pub last_status: Option<u16>,
    pub last_code: Option<String>,
}

/// A load running in the background.
#[derive(Debug)]
pub struct LoadHandle {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<RequestRecord>>>>,
    prober: tokio::task::JoinHandle<Vec<Probe>>,
}

/// One `GET /readyz` of the prober that runs beside the load (not counted as a request).
#[derive(Debug, Clone)]
pub struct Probe {
    pub start: Duration,
    pub latency: Duration,
    /// None: no answer before [`DEADLINE`].
    pub status: Option<u16>,
}

/// What a load did.
#[derive(Debug)]
pub struct LoadResult {
    /// Every request, ordered by start.
    pub records: Vec<RequestRecord>,
    /// `/readyz` every [`PROBE_EVERY`], ordered by start.
    pub readyz: Vec<Probe>,
}

/// How often the prober asks `/readyz`.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

async fn probe_readyz(
    http: Client,
    url: String,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    until: Duration,
) -> Vec<Probe> {
    let mut probes = Vec::new();
    while epoch.elapsed() < until && !stop.load(Ordering::SeqCst) {
        let start = epoch.elapsed();
        let status = match http.get(&url).send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(_) => None,
        };
        let latency = epoch.elapsed() - start;
        probes.push(Probe {
            start,
            latency,
            status,
        });
        tokio::time::sleep(PROBE_EVERY.saturating_sub(latency)).await;
    }
    probes
}

impl LoadHandle {
    /// Start `plan` against `fixture`; one task (and one HTTP connection pool) per client.
    pub fn start(plan: LoadPlan, fixture: &Fixture, seed: u64) -> anyhow::Result<LoadHandle> {
        if plan.clients == 0 || plan.clients > fixture.clients.len() {
            bail!(
                "a plan of {} clients over a fixture of {}",
                plan.clients,
                fixture.clients.len()
            );
        }
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(plan.clients);
        for index in 0..plan.clients {
            let http = Client::builder()
                .timeout(DEADLINE)
                .build()
                .context("building a load client")?;
            let worker = Worker {
                index,
                api: Api {
                    http,
                    base_url: fixture.base_url.clone(),
                },
                fixture: fixture.clone(),
                rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64)),
                plan,
                seed,
                epoch,
                stop: Arc::clone(&stop),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        let http = Client::builder()
            .timeout(DEADLINE)
            .build()
            .context("building the prober")?;
        let url = format!("{}/readyz", fixture.base_url);
        let prober = tokio::spawn(probe_readyz(
            http,
            url,
            epoch,
            Arc::clone(&stop),
            plan.duration,
        ));
        Ok(LoadHandle {
            epoch,
            stop,
            tasks,
            prober,
        })
    }

    /// The instant the load started; every record's `start` counts from it.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Now, from the start of the load.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Ask the clients to stop after their current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait for every client to end (the plan's bound, or [`stop`](Self::stop)) and return all
    /// the records, ordered by start, with the prober's.
    pub async fn finish(self) -> anyhow::Result<LoadResult> {
        let mut records = Vec::new();
        for task in self.tasks {
            records.extend(task.await.context("a load client panicked")??);
        }
        records.sort_by_key(|r| r.start);
        let readyz = self.prober.await.context("the readyz prober panicked")?;
        Ok(LoadResult { records, readyz })
    }
}

#[derive(Debug)]
struct Worker {
    index: usize,
    api: Api,
    fixture: Fixture,
    rng: StdRng,
    plan: LoadPlan,
    seed: u64,
    epoch: Instant,
    stop: Arc<AtomicBool>,
}

impl Worker {
    async fn run(mut self) -> anyhow::Result<Vec<RequestRecord>> {
        let mut records = Vec::new();
        let me = self.fixture.clients[self.index].clone();
        let total = self.plan.mix.reads
            + self.plan.mix.orders
            + self.plan.mix.deposits
            + self.plan.mix.transfers;
        if total == 0 {
            bail!("an empty mix");
        }
        let mut sequence: i64 = 0;
        while records.len() < self.plan.max_requests_per_client
            && self.epoch.elapsed() < self.plan.duration
            && !self.stop.load(Ordering::SeqCst)
        {
            sequence += 1;
            let pick = self.rng.random_range(0..total);
            let mix = self.plan.mix;
            let record = if pick < mix.reads {
                self.read(&me).await
            } else if pick < mix.reads + mix.orders {
                self.order(&me, sequence).await
            } else if pick < mix.reads + mix.orders + mix.deposits {
                self.deposit(&me, sequence).await
            } else {
                self.transfer(&me, sequence).await
            };
            let failed = !record.acked();
            records.push(record);
            if failed {
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
        Ok(records)
    }

    fn record(
        &self,
        kind: Kind,
        key: Option<String>,
        start: Duration,
        sent: Sent,
    ) -> RequestRecord {
        RequestRecord {
            client: self.index,
            kind,
            key,
            start,
            latency: sent.latency,
            status: sent.status,
            code: sent.code,
            error: sent.error,
            deadline_exceeded: sent.deadline_exceeded,
            not_delivered: sent.not_delivered,
            retry_after: sent.retry_after,
            write: None,
        }
    }

    async fn read(&mut self, me: &User) -> RequestRecord {
        let path = format!(
            "/conversations/{}/messages?limit=10",
            self.fixture.conversation_id
        );
        let start = self.epoch.elapsed();
        let sent = self.api.send(self.api.get(&path, &me.token)).await;
        self.record(Kind::Read, None, start, sent)
    }

    async fn order(&mut self, me: &User, sequence: i64) -> RequestRecord {
        let mut products = self.fixture.products.clone();
        products.shuffle(&mut self.rng);
        let lines = self.rng.random_range(1..=2usize);
        let items: Vec<(i64, i64)> = products
            .iter()
            .take(lines)
            .map(|p| (p.id, self.rng.random_range(1..=3)))
            .collect();
        let key = format!("s{}-c{}-o{sequence}", self.seed, self.index);
        let start = self.epoch.elapsed();
        let sent = self
            .api
            .send(order_request(&self.api, me, &key, &items))
            .await;
        let id = sent.body.as_ref().and_then(|b| int(b, "id").ok());
        let total_cents = sent.body.as_ref().and_then(|b| cents_of(b, "total"));
        let mut record = self.record(Kind::Order, Some(key), start, sent);
        record.write = Some(Write::Order {
            buyer: me.id,
            items,
            id,
            total_cents,
        });
        record
    }

    async fn deposit(&mut self, me: &User, sequence: i64) -> RequestRecord {
        // 1.00 plus the sequence in cents: amounts differ, so a row stored with another
        // request's amount shows.
        let cents = 100 + sequence;
        let key = format!("s{}-c{}-d{sequence}", self.seed, self.index);
        let start = self.epoch.elapsed();
        let sent = self
            .api
            .send(deposit_request(&self.api, me, &key, cents))
            .await;
        let balance_cents = sent.body.as_ref().and_then(|b| cents_of(b, "balance"));
        let mut record = self.record(Kind::Deposit, Some(key), start, sent);
        record.write = Some(Write::Deposit {
            user: me.id,
            cents,
            balance_cents,
        });
        record
    }

    async fn transfer(&mut self, me: &User, sequence: i64) -> RequestRecord {
        let clients = self.fixture.clients.len().min(self.plan.clients);
        let to = if clients < 2 {
            self.fixture.seller.id
        } else {
            let offset = self.rng.random_range(1..clients);
            self.fixture.clients[(self.index + offset) % clients].id
        };
        let cents = sequence;
        let key = format!("s{}-c{}-t{sequence}", self.seed, self.index);
        let start = self.epoch.elapsed();
        let sent = self
            .api
            .send(transfer_request(&self.api, me, &key, to, cents))
            .await;
        let id = sent.body.as_ref().and_then(|b| int(b, "id").ok());
        let balance_cents = sent.body.as_ref().and_then(|b| cents_of(b, "balance"));
        let mut record = self.record(Kind::Transfer, Some(key), start, sent);
        record.write = Some(Write::Transfer {
            from: me.id,
            to,
            cents,
            id,
            balance_cents,
        });
        record
    }
}

fn deposit_request(api: &Api, user: &User, key: &str, cents: i64) -> RequestBuilder {
    api.post("/me/deposits", &user.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "amount": money(cents) }))
}

fn transfer_request(api: &Api, from: &User, key: &str, to: i64, cents: i64) -> RequestBuilder {
    api.post("/transfers", &from.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "to_user_id": to, "amount": money(cents) }))
}

fn order_request(api: &Api, buyer: &User, key: &str, items: &[(i64, i64)]) -> RequestBuilder {
    let items: Vec<Value> = items
        .iter()
        .map(|(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
        .collect();
    api.post("/orders", &buyer.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "items": items }))
}

/// Send every keyed write (order, deposit, transfer) that was not acknowledged again, with its
/// own key and body, until it is acknowledged or 5 attempts, 250 ms apart, are spent (all of
/// them within 20 s).
pub async fn resend_failed_writes(
    records: &[RequestRecord],
    fixture: &Fixture,
) -> anyhow::Result<Vec<Resend>> {
    let http = Client::builder()
        .timeout(DEADLINE)
        .build()
        .context("building the resend client")?;
    let api = Api {
        http,
        base_url: fixture.base_url.clone(),
    };
    let budget = Instant::now() + RESEND_BUDGET;
    let mut resends = Vec::new();
    for record in records.iter().filter(|r| !r.acked()) {
        let (Some((kind, user_id, key)), Some(write)) = (record.keyed(), &record.write) else {
            continue;
        };
        let Some(user) = fixture.clients.iter().find(|u| u.id == user_id) else {
            bail!("{kind:?} {key} of an unknown user {user_id}");
        };
        let mut resend = Resend {
            kind,
            key: key.to_owned(),
            user: user_id,
            first: record.outcome(),
            attempts: 0,
            acknowledged: false,
            id: None,
            last_status: None,
            last_code: None,
        };
        while resend.attempts < RESEND_ATTEMPTS && Instant::now() < budget {
            if resend.attempts > 0 {
                tokio::time::sleep(RESEND_PAUSE).await;
            }
            resend.attempts += 1;
            let request = match write {
                Write::Order { items, .. } => order_request(&api, user, key, items),
                Write::Deposit { cents, .. } => deposit_request(&api, user, key, *cents),
                Write::Transfer { to, cents, .. } => transfer_request(&api, user, key, *to, *cents),
            };
            let sent = api.send(request).await;
            resend.last_status = sent.status;
            resend.last_code = sent.code.clone();
            if sent.status.is_some_and(|s| (200..300).contains(&s)) {
                resend.acknowledged = true;
                resend.id = sent.body.as_ref().and_then(|b| int(b, "id").ok());
                break;
            }
        }
        resends.push(resend);
    }
    Ok(resends)
}

/// A request once it has been answered (or not).
#[derive(Debug)]
struct Sent {
    latency: Duration,
    status: Option<u16>,
    code: Option<String>,
    body: Option<Value>,
    error: Option<String>,
    deadline_exceeded: bool,
    not_delivered: bool,
    retry_after: bool,
}

/// A thin client of the HTTP API.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) http: Client,
    pub(crate) base_url: String,
}

impl Api {
    pub(crate) fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Api> {
        let http = Client::builder()
            .timeout(timeout)
            .build()
            .context("building a client")?;
        Ok(Api {
            http,
            base_url: base_url.to_owned(),
        })
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(token)
    }

    fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(token)
    }

    async fn send(&self, request: RequestBuilder) -> Sent {
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.json::<Value>().await.ok();
                let code = if status.is_success() {
                    None
                } else {
                    body.as_ref()
                        .and_then(|b| b.get("code"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                Sent {
                    latency: started.elapsed(),
                    status: Some(status.as_u16()),
                    code,
                    body,
                    error: None,
                    deadline_exceeded: false,
                    not_delivered: false,
                    retry_after,
                }
            }
            Err(error) => Sent {
                latency: started.elapsed(),
                status: None,
                code: None,
                body: None,
                deadline_exceeded: error.is_timeout(),
                // A connect timeout is a timeout too, and may have reached the server's backlog:
                // only a connection that failed otherwise (refused) is certainly not delivered.
                not_delivered: error.is_connect() && !error.is_timeout(),
                error: Some(describe(&error)),
                retry_after: false,
            },
        }
    }

    async fn expect_ok(
        &self,
        request: RequestBuilder,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .context("arranging data through the API")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("reading an answer while arranging")?;
        if status != expected {
            bail!("arranging data: expected {expected}, got {status}: {body}");
        }
        Ok(body)
    }

    async fn register(&self, name: &str) -> anyhow::Result<User> {
        let body = self
            .expect_ok(
                self.http
                    .post(format!("{}/users", self.base_url))
                    .json(&json!({
                        "username": name,
                        "email": format!("{name}@faults.example"),
                    })),
                StatusCode::CREATED,
            )
            .await?;
        let user = body.get("user").context("POST /users without `user`")?;
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .context("POST /users without `token`")?;
        Ok(User {
            id: int(user, "id")?,
            token: token.to_owned(),
        })
    }
}

/// One line for a transport error, with its cause chain.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "deadline"
    } else if error.is_connect() {
        "connect"
    } else if error.is_request() || error.is_body() || error.is_decode() {
        "transport"
    } else {
        "other"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `cents` as the API's decimal string: 1234 → "12.34".
pub fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn int(body: &Value, field: &str) -> anyhow::Result<i64> {
    body.get(field)
        .and_then(Value::as_i64)
        .with_context(|| format!("no integer `{field}` in {body}"))
}

/// A money field ("12.34") in cents.
fn cents_of(body: &Value, field: &str) -> Option<i64> {
    let text = body.get(field)?.as_str()?;
    let (units, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let units: i64 = units.parse().ok()?;
    let fraction: i64 = match fraction.len() {
        1 => fraction.parse::<i64>().ok()? * 10,
        2 => fraction.parse().ok()?,
        _ => return None,
    };
    Some(units * 100 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_with_two_decimals() {
        assert_eq!(money(1234), "12.34");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(10_000_000), "100000.00");
    }

    #[test]
    fn money_fields_are_read_in_cents() {
        assert_eq!(cents_of(&json!({"t": "12.34"}), "t"), Some(1234));
        assert_eq!(cents_of(&json!({"t": "7.5"}), "t"), Some(750));
        assert_eq!(cents_of(&json!({"t": "7"}), "t"), Some(700));
        assert_eq!(cents_of(&json!({"t": 7}), "t"), None);
    }
}
