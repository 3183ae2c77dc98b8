//! How an error and everything that caused it are written to a log: [`ErrorChain`].
//!
//! The crates' errors say in their `Display` what was being done and keep the failure underneath as
//! their `source()`; a log line wants both, so every place that logs an error formats it through
//! this one type instead of `%error`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The failure underneath an error (a driver's, an SDK's, the OS's), kept for the log. An `Arc` so
/// that errors holding one stay `Clone`.
pub type Cause = Arc<dyn Error + Send + Sync>;

/// Displays an error followed by each of its `source()`s, joined with `": "`.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// An error and its causes as one line: `what was done: why: why that`.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    ErrorChain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the menu")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_joins_every_cause() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&e), "reading the menu: disk on fire");
    }
}
