//! How values the domain keeps as integers are written in responses: money as a decimal string,
//! times as RFC 3339 with milliseconds.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_times_keep_their_wire_format() {
        assert_eq!(amount(900), "9.00");
        assert_eq!(amount(-5), "-0.05");
        assert_eq!(timestamp(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
    }
}
