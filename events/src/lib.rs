//! # CloudCafe events
//!
//! The domain's events ([`domain`]), the envelope they travel in ([`envelope`]), and the journal port
//! ([`journal`]) with its two adapters: the embedded SQLite file ([`sqlite`]) and Aurora PostgreSQL
//! ([`postgres`]), and the one loop that follows the journal's global order ([`follow`]). Errors keep
//! their cause; [`ErrorChain`] writes an error with all its causes to a log.
//!
//! Architecture Invariant: this crate knows nothing of actors, HTTP or AWS; it stores and describes
//! events and never decides them.
//!
//! ## Wire format (for consumers in any language)
//!
//! An event leaves the process as a **MessagePack map** with these keys:
//!
//! | key | MessagePack type | meaning |
//! |---|---|---|
//! | `event_id` | bin, 16 bytes | UUID (v7) of this event; consumers deduplicate on it |
//! | `stream_id` | str | e.g. `order-<uuid>`, `inventory-<store>:<sku>`; the prefix before `-` is the category |
//! | `stream_version` | uint | 1 for the stream's first event, then +1 |
//! | `global_position` | uint | position in the journal's commit order, from 1, without holes |
//! | `event_type` | str | e.g. `OrderPlaced` |
//! | `schema_version` | uint | version of the payload's shape for this `event_type` |
//! | `recorded_at_us` | int | microseconds since the Unix epoch |
//! | `correlation_id` | bin, 16 bytes | the request this event belongs to |
//! | `causation_id` | bin 16 bytes, or nil | the event that caused this one |
//! | `payload` | bin | the event itself: a MessagePack map with named fields |
//! | `hash` | bin, 32 bytes | the hash chain link, below |
//!
//! ## Hash chain
//!
//! Per stream, `hash = sha256(previous_hash || canonical)`, where `previous_hash` is the previous
//! event's `hash` in the same stream, or 32 zero bytes for version 1, and `canonical` is the
//! concatenation (integers big-endian):
//!
//! ```text
//! event_id            16 bytes
//! len(stream_id)      u32, then stream_id as UTF-8
//! stream_version      u64
//! len(event_type)     u32, then event_type as UTF-8
//! schema_version      u16
//! recorded_at_us      i64
//! correlation_id      16 bytes
//! causation_id        16 bytes (all zero when nil)
//! len(payload)        u32, then the payload bytes
//! ```
//!
//! `global_position` is not covered: it is assigned at commit. In Python:
//! `struct.pack(">I", len(s)) + s` for each length-prefixed field, `hashlib.sha256(prev + canonical)`.

pub mod domain;
pub mod envelope;
pub mod error_chain;
pub mod follow;
pub mod journal;
pub mod metric;
pub mod postgres;
pub mod secret;
pub mod singleton;
pub mod sqlite;
pub mod tls;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use domain::DomainEvent;
pub use envelope::{Causation, NewEvent, RecordedEvent};
pub use error_chain::{error_chain, Cause, ErrorChain};
pub use follow::{FollowOptions, Follower};
pub use journal::{AppendError, AppendRequest, Appended, ExpectedVersion, Journal, Snapshot, StoreError, Subscription};
