//! The domain's limits, defined once: what a decider accepts into an event, so that no event exists
//! that a read model cannot hold.
//!
//! Every value an event carries ends up in the read models' columns: the storefront on PostgreSQL
//! (`text`, which refuses NUL; `numeric(10,2)` for money, at most 99,999,999.99; `int` for
//! quantities and nutrition, at most 2,147,483,647), the same model on SQLite, the Redshift-SQL
//! analytics model (`varchar(64)` ids, `bigint` cents, `int` item counts), DynamoDB (400 KB items,
//! numbers), DocumentDB and the Redis cache (JSON). Each limit below is the business's own bound,
//! chosen well inside the tightest of those columns, and each check names the request field it is
//! about, so that the HTTP layer answers a 422 naming it.
//!
//! Texts are counted in characters (Unicode scalar values); a character is at most 4 UTF-8 bytes.

use std::ops::RangeInclusive;

use events::domain::{Cents, Nutrition};

/// Longest identifier (customer, store, menu item / SKU), in ASCII characters: fits the analytics
/// model's `varchar(64)` and keeps stream ids short.
pub const MAX_ID_CHARS: usize = 64;
/// Longest menu item or store name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest menu category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 50;
/// Longest reason (an order's cancellation, a store's closing), in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Units of one item a single order line may ask for (PostgreSQL `int`, the event's `u32`).
pub const LINE_QUANTITY: RangeInclusive<i64> = 1..=1_000;
/// Lines one order may hold.
pub const MAX_LINES_PER_ORDER: usize = 50;
/// A menu item's price, in cents: $0.01 to $1,000.00 (`numeric(10,2)` holds up to 99,999,999.99).
pub const UNIT_PRICE_CENTS: RangeInclusive<Cents> = 1..=100_000;
/// The most one order may cost, in cents ($10,000.00): a hundredth of what the storefront's
/// `numeric(10,2)` total holds, so that no sum of lines, however the other limits move, reaches it.
pub const MAX_ORDER_TOTAL_CENTS: Cents = 1_000_000;
/// Units one restock may add.
pub const RESTOCK_QUANTITY: RangeInclusive<i64> = 1..=1_000_000;
/// Units of one SKU one store may hold (the read models' `bigint`s are far above it).
pub const MAX_STOCK_UNITS: u64 = 1_000_000_000;
/// Calories of one menu item (PostgreSQL `int` holds 2,147,483,647; the event's `u32` more).
pub const MAX_CALORIES: u32 = 10_000;
/// Caffeine of one menu item, in milligrams.
pub const MAX_CAFFEINE_MG: u32 = 1_000;
/// Sugar of one menu item, in grams.
pub const MAX_SUGAR_G: u32 = 1_000;
/// An image hash: hex SHA-256, 64 lowercase hex digits (or empty for none).
pub const IMAGE_SHA256_HEX_DIGITS: usize = 64;

/// PostgreSQL `numeric(10,2)`: 99,999,999.99, in cents.
const NUMERIC_10_2_MAX_CENTS: Cents = 9_999_999_999;

// Every limit fits the tightest column that holds it; checked when this crate compiles.
const _: () = {
    assert!(MAX_ORDER_TOTAL_CENTS <= NUMERIC_10_2_MAX_CENTS / 100, "a hundredth of numeric(10,2)");
    assert!(*UNIT_PRICE_CENTS.end() <= MAX_ORDER_TOTAL_CENTS);
    // PostgreSQL `int` and the analytics model's `int` item count (the sum of an order's quantities).
    assert!(*LINE_QUANTITY.end() * MAX_LINES_PER_ORDER as i64 <= i32::MAX as i64);
    assert!(MAX_CALORIES <= i32::MAX as u32);
    assert!(MAX_CAFFEINE_MG <= i32::MAX as u32);
    assert!(MAX_SUGAR_G <= i32::MAX as u32);
    // The events' `u32` quantities, the read models' `bigint` stock.
    assert!(*RESTOCK_QUANTITY.end() <= u32::MAX as i64);
    assert!(MAX_STOCK_UNITS <= i64::MAX as u64);
    // The analytics model's `varchar(64)` ids (ASCII: a byte a character).
    assert!(MAX_ID_CHARS <= 64);
};

/// A value outside the domain's limits, and the request field that holds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct Invalid {
    /// The request field, e.g. `name` or `items[3].quantity`.
    pub field: String,
    pub problem: Problem,
}

/// What is wrong with a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters (found U+{0:04X})")]
    ControlCharacter(u32),
    #[error("must not start or end with whitespace")]
    Untrimmed,
    #[error("must be 1-{MAX_ID_CHARS} ASCII letters, digits, `-` or `_`")]
    BadId,
    #[error("must be from {min} to {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("must hold at most {max} lines")]
    TooManyLines { max: usize },
    #[error("must not be empty: an order needs at least one item")]
    NoLines,
    #[error("add up to {total} cents, more than the {max} an order may cost")]
    TotalTooLarge { total: Cents, max: Cents },
    #[error("would bring the stock to more than {max} units")]
    StockTooLarge { max: u64 },
    #[error("must be {IMAGE_SHA256_HEX_DIGITS} lowercase hex digits or empty")]
    BadHash,
    #[error("must be an email address (local@domain, at most {MAX_EMAIL_CHARS} characters, no spaces)")]
    BadEmail,
    #[error("must be a phone number in E.164 form: `+` and 8 to 15 digits")]
    BadPhone,
}

/// The longest email address SES and RFC 5321 accept.
pub const MAX_EMAIL_CHARS: usize = 254;

/// An email address as SES takes it: `local@domain`, both parts non-empty, the domain with a dot,
/// printable ASCII without spaces, at most [`MAX_EMAIL_CHARS`].
pub fn check_email(field: &str, value: &str) -> Result<(), Invalid> {
    let printable = value.bytes().all(|b| b.is_ascii_graphic());
    let well_formed = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    });
    if printable && well_formed && value.len() <= MAX_EMAIL_CHARS {
        Ok(())
    } else {
        Err(Invalid::new(field, Problem::BadEmail))
    }
}

/// A phone number as SNS takes it for SMS: E.164, `+` then 8 to 15 digits, the first not 0.
pub fn check_phone(field: &str, value: &str) -> Result<(), Invalid> {
    let digits = value.strip_prefix('+').unwrap_or_default();
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(())
    } else {
        Err(Invalid::new(field, Problem::BadPhone))
    }
}

impl Invalid {
    pub fn new(field: impl Into<String>, problem: Problem) -> Self {
        Invalid { field: field.into(), problem }
    }
}

/// A text a person reads (a name, a category, a reason): not empty, no whitespace at either end,
/// no control character (Unicode `Cc`: U+0000-U+001F and U+007F-U+009F, NUL included), at most
/// `max_chars` characters.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), Invalid> {
    let fail = |problem| Err(Invalid::new(field, problem));
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return fail(Problem::ControlCharacter(u32::from(c)));
    }
    if value.trim().is_empty() {
        return fail(Problem::Empty);
    }
    if value.chars().nth(max_chars).is_some() {
        return fail(Problem::TooLong { max: max_chars });
    }
    if value.trim() != value {
        return fail(Problem::Untrimmed);
    }
    Ok(())
}

/// Whether `id` is an identifier: 1-64 ASCII letters, digits, `-` or `_` (nothing that could
/// confuse a stream id, a key or a URL path).
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An identifier (customer, store, menu item / SKU); see [`is_id`].
pub fn check_id(field: &str, id: &str) -> Result<(), Invalid> {
    if is_id(id) {
        Ok(())
    } else {
        Err(Invalid::new(field, Problem::BadId))
    }
}

fn check_range(field: &str, value: i64, range: &RangeInclusive<i64>) -> Result<(), Invalid> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(field, Problem::OutOfRange { min: *range.start(), max: *range.end() }))
    }
}

/// The units of one order line: [`LINE_QUANTITY`].
pub fn check_line_quantity(field: &str, quantity: i64) -> Result<(), Invalid> {
    check_range(field, quantity, &LINE_QUANTITY)
}

/// How many lines an order holds: 1 to [`MAX_LINES_PER_ORDER`]; the field is the list's.
pub fn check_line_count(field: &str, lines: usize) -> Result<(), Invalid> {
    match lines {
        0 => Err(Invalid::new(field, Problem::NoLines)),
        n if n > MAX_LINES_PER_ORDER => Err(Invalid::new(field, Problem::TooManyLines { max: MAX_LINES_PER_ORDER })),
        _ => Ok(()),
    }
}

/// A unit price: [`UNIT_PRICE_CENTS`].
pub fn check_unit_price(field: &str, cents: Cents) -> Result<(), Invalid> {
    check_range(field, cents, &UNIT_PRICE_CENTS)
}

/// The total of `(quantity, unit price)` lines, each already within its limits: at most
/// [`MAX_ORDER_TOTAL_CENTS`]. Answers the total.
pub fn check_order_total(field: &str, lines: impl IntoIterator<Item = (i64, Cents)>) -> Result<Cents, Invalid> {
    let total = lines
        .into_iter()
        .try_fold(0i64, |sum, (quantity, price)| sum.checked_add(quantity.checked_mul(price)?))
        .unwrap_or(Cents::MAX);
    if total > MAX_ORDER_TOTAL_CENTS {
        return Err(Invalid::new(field, Problem::TotalTooLarge { total, max: MAX_ORDER_TOTAL_CENTS }));
    }
    Ok(total)
}

/// The units one restock adds ([`RESTOCK_QUANTITY`]), and the stock it leaves (at most
/// [`MAX_STOCK_UNITS`]) when `on_hand` units are already there.
pub fn check_restock(field: &str, quantity: i64, on_hand: u64) -> Result<(), Invalid> {
    check_range(field, quantity, &RESTOCK_QUANTITY)?;
    if on_hand.saturating_add(quantity.unsigned_abs()) > MAX_STOCK_UNITS {
        return Err(Invalid::new(field, Problem::StockTooLarge { max: MAX_STOCK_UNITS }));
    }
    Ok(())
}

/// A menu item's nutrition: each value within its maximum; the field is `nutrition.<value>`.
pub fn check_nutrition(field: &str, n: &Nutrition) -> Result<(), Invalid> {
    for (name, value, max) in [
        ("calories", n.calories, MAX_CALORIES),
        ("caffeine_mg", n.caffeine_mg, MAX_CAFFEINE_MG),
        ("sugar_g", n.sugar_g, MAX_SUGAR_G),
    ] {
        check_range(&format!("{field}.{name}"), i64::from(value), &(0..=i64::from(max)))?;
    }
    Ok(())
}

/// An image hash: empty, or [`IMAGE_SHA256_HEX_DIGITS`] lowercase hex digits.
pub fn check_image_hash(field: &str, hash: &str) -> Result<(), Invalid> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if hash.is_empty() || (hash.len() == IMAGE_SHA256_HEX_DIGITS && hash.bytes().all(hex)) {
        Ok(())
    } else {
        Err(Invalid::new(field, Problem::BadHash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_short_printable_trimmed_and_not_empty() {
        assert!(check_text("name", "Caffè Latte", MAX_NAME_CHARS).is_ok());
        assert!(check_text("name", &"é".repeat(MAX_NAME_CHARS), MAX_NAME_CHARS).is_ok(), "characters, not bytes");
        let problem = |v: &str| check_text("name", v, MAX_NAME_CHARS).unwrap_err().problem;
        assert_eq!(problem(""), Problem::Empty);
        assert_eq!(problem("   "), Problem::Empty);
        assert_eq!(problem("Latte\0"), Problem::ControlCharacter(0));
        assert_eq!(problem("La\u{7}tte"), Problem::ControlCharacter(7));
        assert_eq!(problem("Latte\n"), Problem::ControlCharacter(10));
        assert_eq!(problem("La\u{85}tte"), Problem::ControlCharacter(0x85));
        assert_eq!(problem(&"x".repeat(10 * 1024)), Problem::TooLong { max: MAX_NAME_CHARS });
        assert_eq!(problem(" Latte"), Problem::Untrimmed);
        assert_eq!(
            check_text("name", "\0", 5).unwrap_err().to_string(),
            "name must not contain control characters (found U+0000)"
        );
    }

    #[test]
    fn an_id_is_ascii_letters_digits_dash_and_underscore() {
        assert!(check_id("store_id", "store-1_A").is_ok());
        for bad in ["", "a b", "a/b", "a\0", "é", &"a".repeat(MAX_ID_CHARS + 1)] {
            assert_eq!(check_id("store_id", bad).unwrap_err().field, "store_id", "{bad:?}");
        }
    }

    #[test]
    fn an_order_total_fits_under_the_cap_without_overflowing() {
        assert_eq!(check_order_total("items", [(2, 450), (1, 325)]), Ok(1225));
        assert_eq!(check_order_total("items", [(10, 100_000)]), Ok(MAX_ORDER_TOTAL_CENTS));
        assert!(check_order_total("items", [(10, 100_000), (1, 1)]).is_err());
        assert!(check_order_total("items", [(i64::MAX, 2)]).is_err(), "an overflow is too large, not a wrap");
    }
}
