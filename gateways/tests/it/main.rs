//! The gateway over real nodes: HTTP behaviour in-process, and a SIGKILL of the real binary.

mod api;
mod kill_restart;
mod replay;
