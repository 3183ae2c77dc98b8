//! `GET /openapi.json`: the API's OpenAPI 3.1 document, generated from the code. Each handler
//! carries its `#[utoipa::path]` (parameters, body, every status it can answer) and each wire type
//! derives `ToSchema`; [`ApiDoc`] gathers them, and the limits the deciders enforce are written in
//! from their constants ([`LIMITS`]) rather than copied by hand.
//!
//! Two tests keep it honest: the document describes exactly the routes `configure` registers
//! (`super::route_table`), and `schemathesis` fuzzes a live node against it
//! (`gateways/tests/it/contract.rs`): no 5xx, no status, header, content type or body the document
//! does not declare, and schema-valid input accepted while schema-invalid input is refused.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actors::domain::limits;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use super::schema::{
    ErrorJson, Forbidden, Internal, PayloadTooLarge, RequestTimeout, TooManyRequests, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use super::Guard;
use super::{admin, analytics, customers, dashboard, inventory, loyalty, menu, orders, payments, stores, stress};

/// The whole document. `paths` lists every handler; the schemas they name are gathered from them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CloudCafe API",
        description = "Coffee orders on an event-sourced core. Commands (POST) are decided by an actor and \
            committed to the journal before they are answered; reads say whether they come from a read model \
            (storefront, analytics: they trail the journal by the projection's lag, see `/admin/projections`) \
            or from an actor's state.\n\n\
            Every error answer has the JSON body `{\"error\": \"...\", \"field\": \"...\"|null}`. 4xx: nothing was \
            written. 503 (with `Retry-After`) means only \"unavailable, retry\". A path no route matches is 404; a \
            method a path does not serve is 405 with `Allow` listing the ones it does.\n\n\
            Every route but the menu listing, the health checks, `/metrics`, this document and the page \
            `/admin/dashboard` needs a bearer token (JWT, security scheme `bearer`): from the node's local key \
            (`cloudcafe token issue --role customer --sub alice`) or from the configured identity provider (Amazon \
            Cognito). Without a valid one: 401 with `WWW-Authenticate`. Roles: a customer acts on their own orders, \
            payments, loyalty and notification preferences (another customer's answer 404, as if they did not exist); staff restock and read \
            their own store's inventory and analytics and move its orders towards pickup; an admin may do everything, and alone uses the menu's \
            commands and `/admin/*`. A role that does not allow a route: 403.",
        license(name = "MIT"),
    ),
    paths(
        orders::place_order,
        orders::get_order,
        orders::advance_order,
        orders::cancel_order,
        orders::customer_orders,
        customers::get_preferences,
        customers::set_preferences,
        inventory::get_stock,
        inventory::store_stock,
        inventory::restock,
        loyalty::get_loyalty,
        payments::get_payment,
        menu::list_menu,
        menu::get_menu_item,
        menu::publish_menu_item,
        menu::change_price,
        menu::set_price,
        menu::delete_menu_item,
        menu::retire,
        analytics::store_minutes,
        stores::open_store,
        stores::close_store,
        stores::get_store,
        admin::health,
        admin::ready,
        admin::metrics,
        admin::projections,
        stress::start,
        stress::show,
        dashboard::page,
        dashboard::data,
        document,
    ),
    components(
        schemas(ErrorJson),
        responses(PayloadTooLarge, UnsupportedMediaType, RequestTimeout, Internal, Unavailable, Unauthorized, Forbidden, TooManyRequests),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "orders", description = "Placing orders and reading them back"),
        (name = "menu", description = "The menu"),
        (name = "inventory", description = "Each store's stock of each menu item"),
        (name = "loyalty", description = "Customers' points and tiers"),
        (name = "customers", description = "How customers are told about their orders"),
        (name = "payments", description = "Orders' payments"),
        (name = "analytics", description = "Per-store 1-minute windows"),
        (name = "stores", description = "Opening and closing stores; orders and restocks need an open store"),
        (name = "operations", description = "Liveness, readiness, metrics, projections and this document"),
    ),
)]
pub struct ApiDoc;

/// The name of the bearer-token security scheme, as every guarded operation's `security` names it.
pub const SECURITY_SCHEME: &str = "bearer";

/// Adds the `bearer` HTTP scheme (JWT) that every guarded operation requires (`auth`).
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT from the node's local key (`cloudcafe token issue`) or the configured identity provider",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(scheme));
    }
}

/// Writes each route's guard into its operation: the `security` requirement and the answers a
/// refusal gives (401; 403 where a role can be refused; 404 where another customer's resource is
/// hidden; 503 when the identity provider's keys cannot be fetched; 429 on every route the rate
/// limiter sees), from the route table itself.
fn apply_guards(doc: &mut Value) {
    let reference = |name: &str| serde_json::json!({ "$ref": format!("#/components/responses/{name}") });
    for (path, method, guard) in super::route_guards() {
        let op = &mut doc["paths"][path][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not documented");
        if !super::auth::is_unlimited(path) {
            op["responses"]["429"] = reference("TooManyRequests");
        }
        if guard == Guard::Public {
            continue;
        }
        op["security"] = serde_json::json!([{ SECURITY_SCHEME: [] }]);
        let responses = &mut op["responses"];
        responses["401"] = reference("Unauthorized");
        if !matches!(guard, Guard::SignedIn | Guard::CustomerInPath(_)) {
            responses["403"] = reference("Forbidden");
        }
        if matches!(guard, Guard::CustomerInPath(_) | Guard::InHandler) && responses.get("404").is_none() {
            responses["404"] = serde_json::json!({
                "description": "Another customer's resource, answered as if it did not exist",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            });
        }
        if responses.get("503").is_none() {
            responses["503"] = reference("Unavailable");
        }
    }
}

/// A limit a decider enforces, written into the document from the decider's own constant:
/// `(schema, property, keyword, value)`.
pub const LIMITS: &[(&str, &str, &str, i64)] = &[
    ("PlaceOrder", "items", "maxItems", limits::MAX_LINES_PER_ORDER as i64),
    ("OrderItem", "quantity", "minimum", *limits::LINE_QUANTITY.start()),
    ("OrderItem", "quantity", "maximum", *limits::LINE_QUANTITY.end()),
    ("Restock", "quantity", "minimum", *limits::RESTOCK_QUANTITY.start()),
    ("Restock", "quantity", "maximum", *limits::RESTOCK_QUANTITY.end()),
    ("PublishMenuItem", "name", "maxLength", limits::MAX_NAME_CHARS as i64),
    ("PublishMenuItem", "category", "maxLength", limits::MAX_CATEGORY_CHARS as i64),
    ("PublishMenuItem", "price_cents", "minimum", *limits::UNIT_PRICE_CENTS.start()),
    ("PublishMenuItem", "price_cents", "maximum", *limits::UNIT_PRICE_CENTS.end()),
    ("ChangePrice", "price_cents", "minimum", *limits::UNIT_PRICE_CENTS.start()),
    ("ChangePrice", "price_cents", "maximum", *limits::UNIT_PRICE_CENTS.end()),
    ("NutritionInput", "calories", "maximum", limits::MAX_CALORIES as i64),
    ("NutritionInput", "caffeine_mg", "maximum", limits::MAX_CAFFEINE_MG as i64),
    ("NutritionInput", "sugar_g", "maximum", limits::MAX_SUGAR_G as i64),
    ("OpenStore", "name", "maxLength", limits::MAX_NAME_CHARS as i64),
    ("CloseStore", "reason", "maxLength", limits::MAX_REASON_CHARS as i64),
];

/// The document as JSON, with [`LIMITS`] applied; built once.
pub fn document_json() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        apply_guards(&mut doc);
        for (schema, property, keyword, value) in LIMITS {
            let target = &mut doc["components"]["schemas"][*schema]["properties"][*property];
            assert!(target.is_object(), "LIMITS names {schema}.{property}, which the document does not have");
            target[*keyword] = Value::from(*value);
        }
        doc
    })
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI 3.1 document of every route, generated from the code.",
    responses((status = 200, description = "The OpenAPI document", body = Value, content_type = "application/json")),
)]
pub(super) async fn document() -> HttpResponse {
    HttpResponse::Ok().json(document_json())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                ops.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
        ops
    }

    #[test]
    fn the_document_describes_exactly_the_routes_configure_registers() {
        let registered: BTreeSet<(String, String)> =
            super::super::route_table().into_iter().map(|(p, m)| (p.to_owned(), m.as_str().to_owned())).collect();
        let documented = operations(document_json());
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(undocumented.is_empty(), "routes without an operation in the OpenAPI document: {undocumented:?}");
        assert!(phantom.is_empty(), "operations in the OpenAPI document that no route serves: {phantom:?}");
    }

    #[test]
    fn every_operation_declares_its_path_parameters_and_its_failures() {
        let doc = document_json();
        assert_eq!(doc["openapi"], "3.1.0");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                let in_template: BTreeSet<&str> =
                    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
                assert_eq!(params, in_template, "{method} {path}: path parameters");
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer");
                if op.get("requestBody").is_some() {
                    for status in ["400", "408", "413", "415", "422", "503"] {
                        assert!(responses.contains_key(status), "{method} {path}: a body route must declare {status}");
                    }
                }
                let text = |s: &str| responses.get(s).map(|r| r.to_string()).unwrap_or_default();
                assert!(
                    !responses.contains_key("503") || text("503").contains("Unavailable"),
                    "{method} {path}: a 503 without Retry-After"
                );
            }
        }
    }

    #[test]
    fn every_guarded_operation_requires_the_bearer_token_and_declares_401() {
        let doc = document_json();
        assert_eq!(doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"], "bearer");
        let mut guarded = 0;
        for (path, method, guard) in super::super::route_guards() {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            let secured = op["security"].to_string().contains(SECURITY_SCHEME);
            if guard == Guard::Public {
                assert!(!secured, "{method} {path} is open, yet documented as needing a token");
                assert!(op["responses"].get("401").is_none(), "{method} {path} is open, yet documents 401");
            } else {
                guarded += 1;
                assert!(secured, "{method} {path}: no `security` naming {SECURITY_SCHEME}");
                assert!(op["responses"]["401"].to_string().contains("Unauthorized"), "{method} {path}: no 401 answer");
            }
        }
        assert!(guarded >= 15, "only {guarded} guarded operations");
    }

    #[test]
    fn limits_come_from_the_deciders_constants() {
        let doc = document_json();
        for (schema, property, keyword, value) in LIMITS {
            assert_eq!(doc["components"]["schemas"][*schema]["properties"][*property][*keyword], *value);
        }
        let body = &doc["components"]["schemas"]["PlaceOrder"];
        assert_eq!(body["additionalProperties"], false, "deny_unknown_fields is declared: {body}");
    }
}
