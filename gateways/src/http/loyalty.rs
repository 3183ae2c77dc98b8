//! `GET /api/loyalty/{customer_id}`: a customer's points and tier.

use actix_web::{web, HttpResponse};
use projections::read_models::cache::CacheKey;
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ApiError;
use super::extractors::path_id;
use super::schema::{ErrorJson, Internal, Unavailable};
use super::ApiState;

/// A customer's loyalty balance.
#[derive(Serialize, ToSchema)]
#[schema(as = Loyalty)]
struct LoyaltyJson {
    customer_id: String,
    points: u64,
    /// `green`, `gold` or `platinum`.
    #[schema(schema_with = super::schema::loyalty_tier)]
    tier: String,
}

/// The loyalty read model (through the cache when there is one); a customer it does not know yet is
/// answered by their account's actor, so a fresh account reads as zero points rather than 404.
#[utoipa::path(
    get,
    path = "/api/loyalty/{customer_id}",
    tag = "loyalty",
    summary = "Read a customer's points",
    description = "Reads the storefront read model (through the Redis cache when the node has one); a customer it \
        does not know yet is read from the loyalty account actor's state, so a new customer has 0 points, not 404.",
    params(("customer_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The balance", body = LoyaltyJson),
        (status = 400, description = "`customer_id` is malformed (or holds control characters)", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_loyalty(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let customer = path_id(&path, "customer_id")?.to_owned();
    crate::logging::record_customer(&customer);
    let load = || state.storefront.loyalty(&customer);
    let projected = match &state.cache {
        Some(cache) => cache.get_or_load(&CacheKey::Loyalty(customer.clone()), load).await?,
        None => load().await?,
    };
    let (points, tier) = match projected {
        Some(balance) => (balance.points.max(0) as u64, balance.tier),
        None => {
            let account = state.cafe.loyalty_account(&customer).await?;
            (account.points, account.tier.as_str().to_owned())
        }
    };
    Ok(HttpResponse::Ok().json(LoyaltyJson { customer_id: customer, points, tier }))
}
