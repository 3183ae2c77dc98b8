#!/usr/bin/env bash
# The offline checks of the deployment as code, part of the test command (no Terraform provider or
# module can be downloaded on these machines, so `terraform init/validate` cannot run here):
#   1. every .tf/.tfvars file is formatted as `terraform fmt` formats it (HashiCorp's formatter);
#   2. every .tf file parses (the HCL parser checkov uses);
#   3. checkov scans deploy/terraform and the Dockerfile: no failed check (each skip is justified
#      in a comment where it is made).
# The cross-check against the binary is a Rust test: `cargo test -p gateways --all-features --bin
# cloudcafe deployment_tests`. Needs ensure_iac_tools (deploy/local/emulators.sh) first.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CLOUDCAFE_CHECKOV:?run ensure_iac_tools from deploy/local/emulators.sh first}"

mapfile -t files < <(find deploy/terraform -name '*.tf' -o -name '*.tfvars' | sort)
echo "-- terraform fmt (hclwrite.Format) over ${#files[@]} files"
NODE_PATH="$CLOUDCAFE_NODE_PATH" node deploy/local/hcl_fmt.js "${files[@]}"

echo "-- every .tf file parses"
"$CLOUDCAFE_IAC_PYTHON" - "${files[@]}" <<'PY'
import sys, hcl2
for path in sys.argv[1:]:
    if path.endswith(".tf"):
        with open(path) as f:
            hcl2.load(f)
print(f"{sum(p.endswith('.tf') for p in sys.argv[1:])} .tf files parse")
PY

echo "-- checkov: deploy/terraform and the Dockerfile"
"$CLOUDCAFE_CHECKOV" --directory deploy/terraform --framework terraform --skip-download --compact --quiet
"$CLOUDCAFE_CHECKOV" --file Dockerfile --framework dockerfile --skip-download --compact --quiet
echo "deployment as code: formatted, parsed, checkov clean"
