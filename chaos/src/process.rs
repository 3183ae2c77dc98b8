//! A node process under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{0} did not start listening within {1:?}")]
    NotReady(SocketAddr, Duration),
    #[error("cannot signal the process: {0}")]
    Signal(std::io::Error),
}

/// A process that serves on `addr`, started with `args`, that can be killed and started again.
pub struct Node {
    program: PathBuf,
    args: Vec<String>,
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// A loopback address with a port nobody listens on right now.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr")
}

impl Node {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, addr: SocketAddr) -> Self {
        Node { program: program.into(), args, addr, child: None }
    }

    /// Starts the process and waits until it accepts connections.
    pub fn start(&mut self, ready_within: Duration) -> Result<(), ProcessError> {
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| ProcessError::Spawn { program: self.program.display().to_string(), source })?;
        self.child = Some(child);
        crate::cluster::wait_listening(&self.program.display().to_string(), self.addr, ready_within, Path::new("-"))
            .map_err(|_| ProcessError::NotReady(self.addr, ready_within))
    }

    /// SIGKILL: no shutdown hook runs, no buffer is flushed.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(ProcessError::Signal)?;
            child.wait().map_err(ProcessError::Signal)?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
