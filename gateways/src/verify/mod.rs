//! `verify`: the invariants a flood, a chaos experiment or an operator checks after the fact, read
//! from the journal and the read models alone.

use serde::{Deserialize, Serialize};

/// One invariant, checked: its name, whether it held, and what was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was counted or what broke the invariant (the first few offenders), for people.
    pub detail: String,
}
