//! The domain's events: what happened to orders, payments, inventory, loyalty, the menu and stores.
//!
//! Every event is a plain struct named in the past tense. Its wire name (`event_type`) is the struct's
//! name and its payload is the struct encoded as a MessagePack map with named fields
//! (`rmp_serde::to_vec_named`), so a consumer in another language can read it without our code.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Money is counted in cents, never in floating point.
pub type Cents = i64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub item_id: String,
    pub quantity: u32,
    pub unit_price_cents: Cents,
}

impl OrderLine {
    pub fn line_total(&self) -> Cents {
        self.unit_price_cents * i64::from(self.quantity)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Green,
    Gold,
    Platinum,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Green => "green",
            Tier::Gold => "gold",
            Tier::Platinum => "platinum",
        }
    }
}

// ---- Orders -------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub lines: Vec<OrderLine>,
    pub total_cents: Cents,
    /// Microseconds since the Unix epoch.
    pub placed_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub amount_cents: Cents,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub reason: String,
}

/// A paid order's preparation began: it can no longer be cancelled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPreparationStarted {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    /// Microseconds since the Unix epoch.
    pub started_at_us: i64,
}

/// The order waits at the counter. Not picked up by `pickup_by_us`, it is [`OrderAbandoned`]: the
/// deadline is in the event, so the timer that enforces it needs nothing but the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReadyForPickup {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub ready_at_us: i64,
    pub pickup_by_us: i64,
}

/// The customer took the order: it is completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPickedUp {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub picked_up_at_us: i64,
}

/// Nobody took the order by its pickup deadline: it is completed as abandoned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAbandoned {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub abandoned_at_us: i64,
}

// ---- Payments -----------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
    pub fraud_score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
    pub fraud_score: f64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub order_id: Uuid,
    pub amount_cents: Cents,
}

/// An authorization that must not be captured (its order was cancelled) is to be released: asked of
/// whoever settles payments (the payment processor, or the saga when it authorizes), which answers
/// with [`PaymentVoided`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoidRequested {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
    pub reason: String,
}

/// The authorization is released: no money is held for the order any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoided {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
}

/// A captured payment is to be given back (its order was cancelled after it was paid, or it was
/// captured after its order's cancellation): asked of whoever settles payments, which answers with
/// [`PaymentRefunded`]. The amount is the captured amount, all of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefundRequested {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
    pub reason: String,
}

/// The captured amount went back to the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
}

// ---- Inventory (one stream per store and SKU) ---------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRestocked {
    pub store_id: String,
    pub sku: String,
    pub quantity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub store_id: String,
    pub sku: String,
    pub order_id: Uuid,
    pub quantity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub store_id: String,
    pub sku: String,
    pub order_id: Uuid,
    pub quantity: u32,
}

/// A reservation became a sale (its order was paid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSettled {
    pub store_id: String,
    pub sku: String,
    pub order_id: Uuid,
    pub quantity: u32,
}

// ---- Loyalty (one stream per customer) ----------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsAccrued {
    pub customer_id: String,
    pub order_id: Uuid,
    pub points: u64,
}

/// The points an order earned are taken back: the order was cancelled and refunded after it was paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsRevoked {
    pub customer_id: String,
    pub order_id: Uuid,
    pub points: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChanged {
    pub customer_id: String,
    pub from: Tier,
    pub to: Tier,
}

// ---- Menu (one stream per item) -----------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nutrition {
    pub calories: u32,
    pub caffeine_mg: u32,
    pub sugar_g: u32,
}

/// Schema 2 added `nutrition` and `image_sha256`; schema-1 payloads are upcast (see [`upcast`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemPublished {
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: Cents,
    pub nutrition: Nutrition,
    /// Hex SHA-256 of the item's image; empty when unknown.
    pub image_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemPriceChanged {
    pub item_id: String,
    pub price_cents: Cents,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemRetired {
    pub item_id: String,
}

// ---- Stores (one stream per store) ---------------------------------------------------------------

/// A store was opened (or reopened after it closed): it takes orders and restocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOpened {
    pub store_id: String,
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub opened_at_us: i64,
}

/// A store was closed: it takes no new orders or restocks; orders placed before go on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreClosed {
    pub store_id: String,
    pub reason: String,
}

// ---- Customers (one stream per customer) --------------------------------------------------------

/// How a customer is told about their orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationChannel {
    /// An email through Amazon SES.
    Email,
    /// A text message through Amazon SNS.
    Sms,
}

impl NotificationChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationChannel::Email => "email",
            NotificationChannel::Sms => "sms",
        }
    }
}

/// A customer chose how to be notified: by email to an address or by text message to a phone
/// number (E.164). A customer who never chose is emailed at the default address of the deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerPreferencesSet {
    pub customer_id: String,
    pub channel: NotificationChannel,
    /// An email address for `email`, a phone number such as `+15551234567` for `sms`.
    pub address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("event `{event_type}` has schema version {found}, this build reads up to {current}")]
    UnsupportedVersion { event_type: String, found: u16, current: u16 },
    #[error("cannot encode event: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode event `{event_type}`: {source}")]
    Decode { event_type: String, source: rmp_serde::decode::Error },
    #[error("cannot upcast `{event_type}` from schema version {from}: {reason}")]
    Upcast { event_type: String, from: u16, reason: String },
}

/// Schema evolution: a function that turns the payload of `event_type` at schema version `from`
/// into version `from + 1`, working on the MessagePack map itself. Decoding applies the chain of
/// upcasters from the stored version up to the current one, so old events never need rewriting.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: u16,
    pub upcast: fn(rmpv::Value) -> Result<rmpv::Value, String>,
}

/// The registry of every upcaster this build knows.
pub const UPCASTERS: &[Upcaster] =
    &[Upcaster { event_type: "MenuItemPublished", from: 1, upcast: upcast::menu_item_published_v1_to_v2 }];

pub mod upcast {
    use rmpv::Value;

    fn map_mut(v: &mut Value) -> Result<&mut Vec<(Value, Value)>, String> {
        match v {
            Value::Map(m) => Ok(m),
            _ => Err("payload is not a map".into()),
        }
    }

    /// v1 had no nutrition facts and no image: they become zeros and an empty hash ("unknown").
    pub fn menu_item_published_v1_to_v2(mut v: Value) -> Result<Value, String> {
        let m = map_mut(&mut v)?;
        m.push((
            Value::from("nutrition"),
            Value::Map(vec![
                (Value::from("calories"), Value::from(0)),
                (Value::from("caffeine_mg"), Value::from(0)),
                (Value::from("sugar_g"), Value::from(0)),
            ]),
        ));
        m.push((Value::from("image_sha256"), Value::from("")));
        Ok(v)
    }
}

/// Brings an old payload up to `current` through the registered upcasters.
fn upcast_payload(event_type: &str, found: u16, current: u16, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let fail = |reason: String| CodecError::Upcast { event_type: event_type.to_owned(), from: found, reason };
    let mut value = rmpv::decode::read_value(&mut &payload[..]).map_err(|e| fail(e.to_string()))?;
    for version in found..current {
        let step = UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from == version)
            .ok_or_else(|| fail(format!("no upcaster from version {version}")))?;
        value = (step.upcast)(value).map_err(&fail)?;
    }
    let mut out = Vec::with_capacity(payload.len() + 64);
    rmpv::encode::write_value(&mut out, &value).map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

// ---- Projections --------------------------------------------------------------------------------

/// An operator parked the event at `position` for the read model `projection`: that projection (and
/// its replays) skip it, because it cannot be projected. Appended by `cloudcafe projections park` to
/// the stream `projection-parks-<projection>`, so that the choice is audited, ordered and replicated
/// with everything else; every other follower ignores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionEventParked {
    /// The read model's name, as `/admin/projections` shows it (`storefront`, `analytics`, ...).
    pub projection: String,
    /// The global position of the parked event.
    pub position: u64,
    /// The parked event's type and stream, as the operator saw them.
    pub event_type: String,
    pub stream_id: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// Who parked it.
    pub parked_by: String,
    /// Microseconds since the Unix epoch.
    pub parked_at_us: i64,
}

macro_rules! domain_events {
    ($( $ty:ident = $version:literal ),* $(,)?) => {
        /// Every event the domain knows, as one enum.
        #[derive(Clone, Debug, PartialEq)]
        pub enum DomainEvent { $( $ty($ty), )* }

        impl DomainEvent {
            /// The wire name: the event struct's name.
            pub fn event_type(&self) -> &'static str {
                match self { $( Self::$ty(_) => stringify!($ty), )* }
            }

            /// The schema version this build writes.
            pub fn schema_version(&self) -> u16 {
                match self { $( Self::$ty(_) => $version, )* }
            }

            /// The MessagePack payload (a map with named fields).
            pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
                Ok(match self { $( Self::$ty(e) => rmp_serde::to_vec_named(e)?, )* })
            }

            /// Decodes a payload of the current schema version.
            pub fn decode(event_type: &str, schema_version: u16, payload: &[u8]) -> Result<Self, CodecError> {
                match event_type {
                    $( stringify!($ty) => {
                        if schema_version > $version || schema_version == 0 {
                            return Err(CodecError::UnsupportedVersion {
                                event_type: event_type.to_owned(), found: schema_version, current: $version,
                            });
                        }
                        let upcast;
                        let payload = if schema_version < $version {
                            upcast = upcast_payload(event_type, schema_version, $version, payload)?;
                            &upcast[..]
                        } else {
                            payload
                        };
                        rmp_serde::from_slice(payload)
                            .map(Self::$ty)
                            .map_err(|source| CodecError::Decode { event_type: event_type.to_owned(), source })
                    } )*
                    other => Err(CodecError::UnknownType(other.to_owned())),
                }
            }
        }

        $( impl From<$ty> for DomainEvent { fn from(e: $ty) -> Self { Self::$ty(e) } } )*
    };
}

domain_events! {
    OrderPlaced = 1,
    OrderPaid = 1,
    OrderCancelled = 1,
    OrderPreparationStarted = 1,
    OrderReadyForPickup = 1,
    OrderPickedUp = 1,
    OrderAbandoned = 1,
    PaymentAuthorized = 1,
    PaymentDeclined = 1,
    PaymentCaptured = 1,
    PaymentVoidRequested = 1,
    PaymentVoided = 1,
    PaymentRefundRequested = 1,
    PaymentRefunded = 1,
    StockRestocked = 1,
    StockReserved = 1,
    StockReleased = 1,
    StockSettled = 1,
    PointsAccrued = 1,
    PointsRevoked = 1,
    TierChanged = 1,
    MenuItemPublished = 2,
    MenuItemPriceChanged = 1,
    MenuItemRetired = 1,
    StoreOpened = 1,
    StoreClosed = 1,
    CustomerPreferencesSet = 1,
    ProjectionEventParked = 1,
}

/// Stream names. One stream per aggregate instance; the prefix before the first `-` is its category.
pub mod streams {
    use uuid::Uuid;

    pub fn order(order_id: Uuid) -> String {
        format!("order-{order_id}")
    }
    pub fn payment(order_id: Uuid) -> String {
        format!("payment-{order_id}")
    }
    pub fn inventory(store_id: &str, sku: &str) -> String {
        format!("inventory-{store_id}:{sku}")
    }
    pub fn loyalty(customer_id: &str) -> String {
        format!("loyalty-{customer_id}")
    }
    pub fn menu_item(item_id: &str) -> String {
        format!("menu-{item_id}")
    }
    pub fn store(store_id: &str) -> String {
        format!("store-{store_id}")
    }
    pub fn customer(customer_id: &str) -> String {
        format!("customer-{customer_id}")
    }
    /// The category of a stream: `order`, `payment`, `inventory`, `loyalty`, `menu`, `store` or
    /// `customer`.
    pub fn category(stream_id: &str) -> &str {
        stream_id.split_once('-').map_or(stream_id, |(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_wire_name() {
        let e: DomainEvent = OrderPlaced {
            order_id: Uuid::nil(),
            customer_id: "c1".into(),
            store_id: "s1".into(),
            lines: vec![OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 }],
            total_cents: 900,
            placed_at_us: 1,
        }
        .into();
        let bytes = e.encode().unwrap();
        let back = DomainEvent::decode(e.event_type(), e.schema_version(), &bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.event_type(), "OrderPlaced");
    }

    #[test]
    fn unknown_types_and_future_versions_are_refused() {
        assert!(matches!(DomainEvent::decode("Nope", 1, &[]), Err(CodecError::UnknownType(_))));
        assert!(matches!(
            DomainEvent::decode("OrderPaid", 9, &[]),
            Err(CodecError::UnsupportedVersion { found: 9, .. })
        ));
    }

    #[test]
    fn a_v1_menu_item_is_read_as_v2_through_its_upcaster() {
        #[derive(Serialize)]
        struct MenuItemPublishedV1 {
            item_id: String,
            name: String,
            category: String,
            price_cents: Cents,
        }
        let v1 = rmp_serde::to_vec_named(&MenuItemPublishedV1 {
            item_id: "latte".into(),
            name: "Latte".into(),
            category: "coffee".into(),
            price_cents: 450,
        })
        .unwrap();
        let e = DomainEvent::decode("MenuItemPublished", 1, &v1).unwrap();
        assert_eq!(
            e,
            DomainEvent::MenuItemPublished(MenuItemPublished {
                item_id: "latte".into(),
                name: "Latte".into(),
                category: "coffee".into(),
                price_cents: 450,
                nutrition: Nutrition::default(),
                image_sha256: String::new(),
            })
        );
        assert!(matches!(DomainEvent::decode("MenuItemPublished", 0, &v1), Err(CodecError::UnsupportedVersion { .. })));
        assert!(matches!(DomainEvent::decode("MenuItemPublished", 1, &[0xc1]), Err(CodecError::Upcast { .. })));
    }

    #[test]
    fn stream_categories() {
        assert_eq!(streams::category(&streams::inventory("s-1", "latte")), "inventory");
        assert_eq!(streams::category(&streams::order(Uuid::nil())), "order");
        assert_eq!(streams::category(&streams::store("store-1")), "store");
    }
}
