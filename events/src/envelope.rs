//! The event envelope, its canonical bytes and the per-stream hash chain.
//!
//! See the crate documentation for the byte layout a foreign consumer needs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{CodecError, DomainEvent};

/// The hash a stream's first event chains from.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Who caused an event: the request or message it belongs to and the event or command that led to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Causation {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl Causation {
    pub fn new_root() -> Self {
        Causation { correlation_id: Uuid::now_v7(), causation_id: None }
    }
    /// The causation for events that react to `event`.
    pub fn following(event: &RecordedEvent) -> Self {
        Causation { correlation_id: event.correlation_id, causation_id: Some(event.event_id) }
    }
}

/// An event about to be appended: everything but its place in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at_us: i64,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub payload: Vec<u8>,
}

impl NewEvent {
    pub fn from_domain(event: &DomainEvent, causation: Causation) -> Result<Self, CodecError> {
        Ok(NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at_us: now_us(),
            correlation_id: causation.correlation_id,
            causation_id: causation.causation_id,
            payload: event.encode()?,
        })
    }

    /// Gives the event its place in a stream and chains its hash to the previous event's.
    /// The global position is assigned by the journal when it commits.
    pub fn record(self, stream_id: &str, stream_version: u64, previous_hash: &[u8; 32]) -> RecordedEvent {
        let mut e = RecordedEvent {
            event_id: self.event_id,
            stream_id: stream_id.to_owned(),
            stream_version,
            global_position: 0,
            event_type: self.event_type,
            schema_version: self.schema_version,
            recorded_at_us: self.recorded_at_us,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: self.payload,
            hash: [0; 32],
        };
        e.hash = e.expected_hash(previous_hash);
        e
    }
}

/// An event as the journal holds it. Field names are the wire names of the MessagePack envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    /// 1 for a stream's first event.
    pub stream_version: u64,
    /// 1 for the journal's first event; gap-free in commit order.
    pub global_position: u64,
    pub event_type: String,
    pub schema_version: u16,
    /// Microseconds since the Unix epoch, set by the writer.
    pub recorded_at_us: i64,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    #[serde(with = "serde_bytes_vec")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes_array")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// The bytes the hash chain covers (see the crate docs for the layout).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.stream_id.len() + self.event_type.len() + self.payload.len());
        b.extend_from_slice(self.event_id.as_bytes());
        b.extend_from_slice(&(self.stream_id.len() as u32).to_be_bytes());
        b.extend_from_slice(self.stream_id.as_bytes());
        b.extend_from_slice(&self.stream_version.to_be_bytes());
        b.extend_from_slice(&(self.event_type.len() as u32).to_be_bytes());
        b.extend_from_slice(self.event_type.as_bytes());
        b.extend_from_slice(&self.schema_version.to_be_bytes());
        b.extend_from_slice(&self.recorded_at_us.to_be_bytes());
        b.extend_from_slice(self.correlation_id.as_bytes());
        b.extend_from_slice(self.causation_id.unwrap_or(Uuid::nil()).as_bytes());
        b.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.payload);
        b
    }

    /// `sha256(previous_hash || canonical_bytes)`.
    pub fn expected_hash(&self, previous_hash: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(previous_hash);
        h.update(self.canonical_bytes());
        h.finalize().into()
    }

    pub fn decode(&self) -> Result<DomainEvent, CodecError> {
        DomainEvent::decode(&self.event_type, self.schema_version, &self.payload)
    }

    /// The envelope as a MessagePack map with named fields: what leaves the process.
    pub fn to_wire(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("an envelope always encodes")
    }

    pub fn from_wire(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Where a stream's hash chain first breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hash chain broken in stream {stream_id} at version {stream_version} (global position {global_position})")]
pub struct BrokenLink {
    pub stream_id: String,
    pub stream_version: u64,
    pub global_position: u64,
}

/// Verifies one stream's events, read in order from version 1.
pub fn verify_stream(events: &[RecordedEvent]) -> Result<(), BrokenLink> {
    let mut previous = GENESIS_HASH;
    for (expected_version, e) in (1..).zip(events) {
        if e.stream_version != expected_version || e.expected_hash(&previous) != e.hash {
            return Err(BrokenLink {
                stream_id: e.stream_id.clone(),
                stream_version: e.stream_version,
                global_position: e.global_position,
            });
        }
        previous = e.hash;
    }
    Ok(())
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}

/// UUIDs travel as 16-byte binaries (MessagePack `bin 8`), as does the payload and the hash.
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let b: super::serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        Ok(b.0)
    }
}

mod serde_bytes_array {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let b: super::serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        b.0.try_into().map_err(|_| D::Error::custom("hash must be 32 bytes"))
    }
}

mod serde_bytes_buf {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    pub struct Buf(pub Vec<u8>);
    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Buf, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = a.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Buf(out))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderPaid;

    fn sample(version: u64, prev: &[u8; 32]) -> RecordedEvent {
        let e = NewEvent::from_domain(
            &OrderPaid { order_id: Uuid::nil(), amount_cents: 100 }.into(),
            Causation::new_root(),
        )
        .unwrap();
        e.record("order-x", version, prev)
    }

    #[test]
    fn a_chain_verifies_and_a_changed_byte_breaks_it_at_that_event() {
        let a = sample(1, &GENESIS_HASH);
        let b = sample(2, &a.hash);
        let c = sample(3, &b.hash);
        assert_eq!(verify_stream(&[a.clone(), b.clone(), c.clone()]), Ok(()));
        let mut tampered = b.clone();
        tampered.payload[3] ^= 1;
        let err = verify_stream(&[a, tampered, c]).unwrap_err();
        assert_eq!(err.stream_version, 2);
    }

    #[test]
    fn the_wire_envelope_round_trips_with_binary_ids() {
        let mut a = sample(1, &GENESIS_HASH);
        a.global_position = 42;
        let wire = a.to_wire();
        assert_eq!(RecordedEvent::from_wire(&wire).unwrap(), a);
    }
}
