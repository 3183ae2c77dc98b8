//! Which failures of a SQL store are about the data, not the store: a value the model's columns
//! cannot hold is [`SinkError::Poison`] (trying again will not help), everything else — a lost
//! connection, a timeout, a deadlock — stays [`SinkError::Unavailable`]. The store's error is kept
//! as the cause either way.

use events::StoreError;
use tokio_postgres::error::SqlState;

use crate::SinkError;

/// Whether a PostgreSQL SQLSTATE says the statement's data was refused: class 22 (data exception:
/// 22001 string too long, 22003 numeric out of range, 22008 datetime out of range, 22021 invalid
/// byte sequence such as a NUL in a text, 22P02 invalid text representation, ...), the class 23
/// integrity violations that are about the row itself (23502 not null, 23503 foreign key, 23514
/// check, 23001 restrict; not 23505 unique or 23P01 exclusion, which concurrent writers can cause),
/// and 54000 (a value too large for an index row).
pub fn is_data_refusal(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("22") || matches!(code, "23502" | "23503" | "23514" | "23001" | "54000")
}

/// A PostgreSQL failure while applying events: poison if the server refused the data, else the
/// read model is unavailable.
pub fn pg_apply(e: tokio_postgres::Error) -> SinkError {
    match e.as_db_error().map(|db| db.code().clone()) {
        Some(code) if is_data_refusal(&code) => {
            SinkError::poison_because(format!("PostgreSQL refused the data ({})", code.code()), e)
        }
        _ => SinkError::from(events::postgres::pg(e)),
    }
}

/// A SQLite failure while applying events (as the SQLite pool reports it): poison if SQLite refused
/// the data (a constraint, a value too big, a type mismatch), else the read model is unavailable.
pub fn sqlite_apply(e: StoreError) -> SinkError {
    let refused = match &e {
        StoreError::Unavailable { cause: Some(cause), .. } => {
            cause.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code).is_some_and(|code| {
                matches!(
                    code,
                    rusqlite::ErrorCode::ConstraintViolation
                        | rusqlite::ErrorCode::TooBig
                        | rusqlite::ErrorCode::TypeMismatch
                )
            })
        }
        _ => false,
    };
    if refused {
        SinkError::poison_because("SQLite refused the data", e)
    } else {
        SinkError::from(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_exceptions_are_refusals_and_the_rest_is_not() {
        for refused in [
            SqlState::STRING_DATA_RIGHT_TRUNCATION,
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::DATETIME_FIELD_OVERFLOW,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::PROGRAM_LIMIT_EXCEEDED,
        ] {
            assert!(is_data_refusal(&refused), "{}", refused.code());
        }
        for transient in [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::UNIQUE_VIOLATION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CONNECTION_FAILURE,
            SqlState::QUERY_CANCELED,
            SqlState::UNDEFINED_TABLE,
        ] {
            assert!(!is_data_refusal(&transient), "{}", transient.code());
        }
    }

    #[test]
    fn a_sqlite_constraint_is_poison_and_a_busy_database_is_not() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL)").unwrap();
        let refused = conn.execute("INSERT INTO t (x) VALUES (NULL)", []).unwrap_err();
        let e = sqlite_apply(StoreError::unavailable_because("a SQLite statement failed", refused));
        assert!(e.is_poison(), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(!sqlite_apply(StoreError::unavailable_because("a SQLite statement failed", busy)).is_poison());
    }
}
