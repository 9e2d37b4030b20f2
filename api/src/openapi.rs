//! The OpenAPI 3.1 document, generated from the code with utoipa.
//!
//! Each handler carries its own `#[utoipa::path(...)]` annotation and is registered with
//! `utoipa_axum::routes!` in `routes.rs`, which adds it to the router and to the document at once.
//! [`finish`] then gives every operation the problem responses it can produce without saying so
//! — 500 and 503 everywhere; 400, 413, 415 and 422 where there is a JSON body; 404 where there
//! are path parameters; 422 where there are parameters of any kind; 401 where the operation
//! requires the `bearer` scheme — so a handler's annotation only lists its own successes and its
//! domain errors (a 409 `insufficient_stock`, say). It also declares, on every success of every
//! write, the `x-read-after-lsn` header the replica routing stamps there (see `read_after`), and
//! the [`LINKS`] from what a write creates to the operations that take its id, which stateful
//! testing (Schemathesis) follows.
//!
//! The request schemas come from `crate::schemas`, built from the constants of the newtypes that
//! parse the input. An authenticated operation declares `security(("bearer" = []))`; see
//! [`BEARER`].

use serde_json::{Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Object, OpenApi as Document, Ref, RefOr, ResponseBuilder, Type,
        header::HeaderBuilder,
        link::LinkBuilder,
        path::{Operation, ParameterIn, PathItem},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use crate::error::{ErrorCode, PROBLEM_JSON, Problem};

/// The name of the bearer-token security scheme, as operations refer to it.
pub const BEARER: &str = "bearer";

/// The document's fixed parts: information, tags, shared schemas and the security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mercado",
        description = "A small marketplace: people chat in conversations and buy from each other.\n\n\
            Every error is `application/problem+json` (RFC 9457) with a stable `code`; see the \
            `Problem` and `ErrorCode` schemas. Every response carries `x-request-id`, echoing the \
            request's own when it sent one; `x-query-count`, the number of SQL statements serving \
            it took; and `server-timing` with their database time. A response whose request ran \
            an N+1 pattern also carries `x-n-plus-one`, naming the repeated statement. (A server \
            configured with `SQL_HEADERS=count` sends only `x-query-count` and `server-timing`; \
            with `SQL_HEADERS=off`, none of the three.)\n\n\
            Money is a decimal string (`\"12.50\"`), never a JSON number: sent with 0 to 2 \
            decimal places, returned with two. Times are RFC 3339 in UTC. Lengths count Unicode \
            code points, as JSON Schema's `minLength` and `maxLength` do (a validator that counts \
            UTF-16 units, as some JavaScript ones do, counts 😀 twice); text may hold anything but \
            NUL and is returned exactly as sent.\n\n\
            Unknown fields in a JSON body are refused with 422 `validation_failed` naming them, on \
            every endpoint (`additionalProperties: false`), so that a misspelt optional field is \
            never silently ignored. Unknown query parameters and headers are ignored, as HTTP \
            intends. A method a path does not list is 405 `method_not_allowed` with `Allow` (see \
            the `MethodNotAllowed` response), and a path not listed here is 404 `not_found`."
    ),
    tags(
        (name = "operations", description = "Liveness, readiness and this document."),
        (name = "conversations", description = "Conversations and their messages; only participants see them."),
        (name = "users", description = "Registering, and reading users and one's own profile."),
        (name = "money", description = "Deposits and transfers. Amounts are decimal strings."),
        (name = "products", description = "Selling, reading and searching products."),
        (name = "orders", description = "Buying, cancelling and reading one's own orders."),
        (name = "inspector", description = "The development-only SQL inspector: every request's statements, values, timings and N+1 findings. Off by default (`--inspect` turns it on); while it is off, every route here is 404 `not_found`."),
    ),
    components(schemas(Problem, ErrorCode, crate::routes::LineRequest)),
    modifiers(&BearerScheme),
)]
pub(crate) struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token returned once, when the user is created: \
                         `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The problem responses shared by many operations: (status, component name, description).
const SHARED_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "`bad_request`: the body is not valid JSON.",
    ),
    (
        "401",
        "Unauthorized",
        "`unauthorized`: the bearer token is missing, malformed or unknown.",
    ),
    (
        "404",
        "NotFound",
        "`not_found`: nothing with this id, or nothing the caller may see.",
    ),
    (
        "405",
        "MethodNotAllowed",
        "`method_not_allowed`: the path exists, but not for this method; `Allow` lists those it \
         takes. No operation below answers it: only a method a path does not list does.",
    ),
    (
        "413",
        "PayloadTooLarge",
        "`payload_too_large`: the body is over the limit (1 MiB).",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "`unsupported_media_type`: the body is not sent as `application/json`.",
    ),
    (
        "422",
        "ValidationFailed",
        "`validation_failed`: an input breaks a rule; `detail` names the field.",
    ),
    (
        "500",
        "Internal",
        "`internal`: an unexpected failure; logged, never detailed in the response.",
    ),
    (
        "503",
        "ServiceUnavailable",
        "`service_unavailable`: the database is unavailable or contended, or the request \
         timed out; `Retry-After` says when to try again.",
    ),
];

/// The complete document: `document` (as the router built it) with the shared problem responses
/// registered as components and attached to every operation that can produce them.
pub fn finish(mut document: Document) -> Document {
    let components = document.components.get_or_insert_with(Default::default);
    for (_, name, description) in SHARED_RESPONSES {
        components.responses.insert(
            (*name).to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            ),
        );
    }
    for item in document.paths.paths.values_mut() {
        for operation in writes_mut(item) {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    response.headers.insert(
                        crate::read_after::READ_AFTER_LSN.to_owned(),
                        HeaderBuilder::new()
                            .schema(Object::with_type(Type::String))
                            .description(Some(
                                "Sent only with replica routing on (`DATABASE_REPLICA_URL`): \
                                 the primary's WAL position after this write. Send it back as \
                                 the `x-read-after-lsn` request header of a read to see the \
                                 write there.",
                            ))
                            .build(),
                    );
                }
            }
        }
        for operation in operations_mut(item) {
            add_links(operation);
            for status in statuses_of(operation) {
                if let Some((_, name, _)) = SHARED_RESPONSES.iter().find(|(s, ..)| *s == status) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
            }
        }
    }
    document
}

/// A link from a success of one operation to an operation that takes what it created: (source
/// operation id, status, link name, target operation id, parameters, request body). Runtime
/// expressions (`$response.body#/id`) name the id in the source's response; a request body is
/// merged into the one the client would send.
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    fn() -> Option<Value>,
);

fn no_body() -> Option<Value> {
    None
}

/// Every link in the document, for clients and for stateful testing.
pub const LINKS: &[LinkSpec] = &[
    (
        "register",
        "201",
        "GetUser",
        "get_user",
        &[("path.id", "$response.body#/user/id")],
        no_body,
    ),
    ("register", "201", "TransferTo", "transfer", &[], || {
        Some(json!({"to_user_id": "$response.body#/user/id"}))
    }),
    (
        "register",
        "201",
        "StartConversationWith",
        "create_conversation",
        &[],
        || Some(json!({"participant_ids": ["$response.body#/user/id"]})),
    ),
    (
        "create_product",
        "201",
        "GetProduct",
        "get_product",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
    (
        "create_product",
        "201",
        "OrderIt",
        "place_order",
        &[],
        || Some(json!({"items": [{"product_id": "$response.body#/id", "quantity": 1}]})),
    ),
    (
        "create_product",
        "201",
        "StartConversationAbout",
        "create_conversation",
        &[],
        || Some(json!({"product_id": "$response.body#/id"})),
    ),
    (
        "create_conversation",
        "201",
        "GetConversation",
        "get_conversation",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
    (
        "create_conversation",
        "201",
        "PostMessage",
        "post_message",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
    (
        "create_conversation",
        "201",
        "ListMessages",
        "list_messages",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
    (
        "post_message",
        "201",
        "ReplyToIt",
        "post_message",
        &[("path.id", "$response.body#/conversation_id")],
        || Some(json!({"reply_to_id": "$response.body#/id"})),
    ),
    (
        "post_message",
        "201",
        "ListOlderMessages",
        "list_messages",
        &[
            ("path.id", "$response.body#/conversation_id"),
            ("query.before", "$response.body#/id"),
        ],
        no_body,
    ),
    (
        "place_order",
        "201",
        "GetOrder",
        "get_order",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
    (
        "place_order",
        "201",
        "CancelOrder",
        "cancel_order",
        &[("path.id", "$response.body#/id")],
        no_body,
    ),
];

/// Adds to `operation`'s successes the [`LINKS`] that start there.
fn add_links(operation: &mut Operation) {
    let Some(source) = operation.operation_id.clone() else {
        return;
    };
    for (from, status, name, target, parameters, body) in LINKS {
        if *from != source {
            continue;
        }
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else {
            continue;
        };
        let mut link = LinkBuilder::new()
            .operation_id(*target)
            .request_body(body())
            .description(format!("`{target}` with what this created."));
        for (parameter, expression) in *parameters {
            link = link.parameter(*parameter, *expression);
        }
        response
            .links
            .insert((*name).to_owned(), RefOr::T(link.build()));
    }
}

/// The document as served at `/openapi.json`. utoipa 5 writes a link's `operationId`,
/// `operationRef` and `requestBody` in snake case (`operation_id`), which no client reads; here
/// they are spelt as OpenAPI spells them.
pub fn to_json(document: &Document) -> Value {
    let mut json = serde_json::to_value(document).unwrap_or_else(|error| {
        tracing::error!(%error, "the OpenAPI document does not serialize");
        Value::Null
    });
    let links = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    json
}

/// The operations that write, as `read_after::stamp` counts them: all but GET, HEAD, OPTIONS.
fn writes_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The shared error statuses `operation` can answer with, from what it takes.
fn statuses_of(operation: &Operation) -> Vec<&'static str> {
    let mut statuses = vec!["500", "503"];
    if operation.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    if parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path)
    {
        statuses.push("404");
    }
    // A path id that is not an integer, a query value or a header (`Idempotency-Key`,
    // `x-read-after-lsn`) that breaks its rule.
    if !parameters.is_empty() {
        statuses.push("422");
    }
    let authenticated = operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement != SecurityRequirement::default());
    if authenticated {
        statuses.push("401");
    }
    statuses
}
