//! Names no other test uses, so that tests share servers and emulators safely.

/// `prefix-` and a random 32-digit hex id: a stream, queue or lease table of the test's own.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A random 12-digit hex id, for names with a length limit or that other names are built from
/// (table prefixes, database names).
pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
