//! The fault proxy (being written).
