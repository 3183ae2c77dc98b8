//! How values the domain keeps as integers are written in responses (money as a decimal string,
//! times as RFC 3339 with milliseconds) and read from bodies (JSON Schema's integers).

use serde::de::{self, Deserializer, Visitor};

/// Cents as a decimal amount: `900` is `"9.00"`, `-5` is `"-0.05"`.
pub(super) fn amount(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

/// Microseconds since the epoch as RFC 3339 UTC with milliseconds (empty if out of range).
pub(super) fn timestamp(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A body field the OpenAPI document declares `integer`: JSON Schema counts `2.0` and `1e3` as
/// integers, so they are read as 2 and 1000; a fraction, a string or a value out of `T`'s range is
/// refused (a 400 naming the field).
pub(super) fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    struct Integer<T>(std::marker::PhantomData<T>);

    impl<T: TryFrom<i64> + TryFrom<u64>> Visitor<'_> for Integer<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &"an integer in range"))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &"an integer in range"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // i64::MIN is exactly -2^63; every whole f64 in [-2^63, 2^63) converts without loss.
            if v.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
                self.visit_i64(v as i64)
            } else {
                Err(E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
    }

    deserializer.deserialize_any(Integer(std::marker::PhantomData))
}

/// The header a command's answer carries when it wrote events: their correlation id, so that a
/// client (the floods' ack ledger, an operator) can find exactly those events in the journal.
pub(super) const CORRELATION_HEADER: &str = "X-Correlation-Id";

/// `(CORRELATION_HEADER, id)` when `wrote`, for `HttpResponseBuilder::insert_header`.
pub(super) fn correlation(causation: &events::Causation, wrote: bool) -> Option<(&'static str, String)> {
    wrote.then(|| (CORRELATION_HEADER, causation.correlation_id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Line {
        #[serde(deserialize_with = "integer")]
        quantity: i64,
        #[serde(deserialize_with = "integer")]
        calories: u32,
    }

    #[test]
    fn integers_are_read_as_json_schema_counts_them() {
        let line: Line = serde_json::from_str(r#"{"quantity": 2.0, "calories": 1e3}"#).unwrap();
        assert_eq!((line.quantity, line.calories), (2, 1000));
        let line: Line = serde_json::from_str(r#"{"quantity": -7, "calories": 0}"#).unwrap();
        assert_eq!((line.quantity, line.calories), (-7, 0));
        for refused in [
            r#"{"quantity": 2.5, "calories": 1}"#,
            r#"{"quantity": "2", "calories": 1}"#,
            r#"{"quantity": 1e19, "calories": 1}"#,
            r#"{"quantity": 1, "calories": -1}"#,
            r#"{"quantity": 1, "calories": 4294967296}"#,
        ] {
            assert!(serde_json::from_str::<Line>(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn amounts_and_times_keep_their_wire_format() {
        assert_eq!(amount(900), "9.00");
        assert_eq!(amount(-5), "-0.05");
        assert_eq!(timestamp(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
    }
}
