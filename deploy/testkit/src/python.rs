//! The Python tools the tests run: the consumer of the Kinesis wire format
//! (`deploy/local/verify_kinesis.py`), which checks what the publisher wrote from the documented
//! format alone, with boto3 and msgpack; and `schemathesis`, which fuzzes a live node against its
//! OpenAPI document.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{repo_root, under_ci};

/// A Python with boto3 and msgpack, for `deploy/local/verify_kinesis.py`: the repo's
/// `.cc-local/venv` (where `deploy/local/emulators.sh` installs them) if it has them, else
/// `python3`. Missing: SKIPPED, or a failure under CI=true.
pub fn python_with_boto3() -> Option<PathBuf> {
    let candidates = [repo_root().join(".cc-local/venv/bin/python"), PathBuf::from("python3")];
    for python in candidates {
        let ok = Command::new(&python).args(["-c", "import boto3, msgpack"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    if under_ci() {
        panic!("CI=true but no python3 with boto3 and msgpack (pip install boto3 msgpack into .cc-local/venv)");
    }
    eprintln!("SKIPPED: no python3 with boto3 and msgpack (pip install boto3 msgpack into .cc-local/venv)");
    None
}

/// Runs `deploy/local/verify_kinesis.py` on a stream: (exit code, stdout, stderr).
pub fn verify_kinesis_with_python(python: &Path, endpoint: &str, stream: &str) -> (i32, String, String) {
    let script = repo_root().join("deploy/local/verify_kinesis.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--endpoint", endpoint, "--stream", stream])
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .expect("run verify_kinesis.py");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The `schemathesis` CLI that fuzzes a live node against its OpenAPI document:
/// `CLOUDCAFE_TEST_SCHEMATHESIS` (set by `ensure_schemathesis` in `deploy/local/emulators.sh`), else
/// the repo's `.cc-local/venv/bin/schemathesis` if it is there. Missing: SKIPPED, or a failure under
/// CI=true.
pub fn schemathesis() -> Option<PathBuf> {
    let from_env = std::env::var_os("CLOUDCAFE_TEST_SCHEMATHESIS").filter(|v| !v.is_empty()).map(PathBuf::from);
    let candidates = from_env.into_iter().chain([repo_root().join(".cc-local/venv/bin/schemathesis")]);
    for cli in candidates {
        if Command::new(&cli).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some(cli);
        }
    }
    let hint = "source deploy/local/emulators.sh && ensure_schemathesis (installs it into .cc-local/venv)";
    if under_ci() {
        panic!("CI=true but schemathesis is not installed: {hint}");
    }
    eprintln!("SKIPPED: schemathesis is not installed, the API contract is NOT checked: {hint}");
    None
}
