//! The gateway over real nodes: HTTP behaviour in-process, a SIGKILL of the real binary, the payment
//! processor and three nodes on one log (the last two need the `cloud` feature and the emulators).

mod api;
mod kill_restart;
mod limits;
#[cfg(feature = "cloud")]
mod payments;
mod replay;
#[cfg(feature = "cloud")]
mod three_nodes;
