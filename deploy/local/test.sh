#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts (installing if needed) the servers and the AWS
# emulators the tests need, then format check, clippy with warnings as errors on every feature and on
# the default features, the release build of the README's run command, and every test of the
# workspace with every feature (the AWS and DocumentDB adapters are features); between them, the
# offline checks of deploy/terraform and the Dockerfile (deploy/local/iac_checks.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
source deploy/local/emulators.sh

ensure_postgres || exit 1
ensure_redis || exit 1
ensure_moto || exit 1
ensure_secantusdb || exit 1
ensure_kinesalite || exit 1
ensure_python_clients || exit 1
ensure_schemathesis || exit 1
ensure_chromium || exit 1
ensure_haproxy || exit 1
ensure_chaostoolkit || exit 1
ensure_iac_tools || exit 1

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== deployment as code: terraform fmt, parse, checkov (deploy/local/iac_checks.sh)"
bash deploy/local/iac_checks.sh
echo "== cargo clippy -D warnings (every feature)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo clippy -D warnings (default features: the build the README runs)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build --release --bin cloudcafe (the README's run command)"
cargo build --release --locked --bin cloudcafe
echo "== cargo test"
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/cloudcafe-test.log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "${TMPDIR:-/tmp}/cloudcafe-test.log" | awk '{p+=$4; f+=$6} END {print p+0, f+0}')
set -- $passed
echo "$1 passed, $2 failed"
exit "$status"
