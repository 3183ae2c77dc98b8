#!/usr/bin/env bash
# Installs (from PyPI and npm, into .cc-local/ in the repo) and starts the local emulators that stand
# in for AWS in the integration tests, then exports their endpoints. Sourced by deploy/local/test.sh;
# usable by hand:
#
#   source deploy/local/emulators.sh && ensure_moto && ensure_secantusdb && ensure_kinesalite
#   ...
#   stop_emulators
#
# | function          | emulator                      | port  | exports                  |
# |-------------------|-------------------------------|-------|--------------------------|
# | ensure_moto       | moto 5.2.5 (DynamoDB)         | 5056  | CLOUDCAFE_TEST_DYNAMODB  |
# |                   | moto 5.2.5 (SQS, SES, SNS)    | 5057  | CLOUDCAFE_TEST_SQS, CLOUDCAFE_TEST_SES_SNS |
# |                   | moto 5.2.5 (CloudWatch)       | 5058  | CLOUDCAFE_TEST_CLOUDWATCH |
# | ensure_secantusdb | secantusdb (MongoDB wire)     | 27018 | CLOUDCAFE_TEST_MONGO     |
# | ensure_kinesalite | kinesalite 3.3.3 (Kinesis)    | 4567  | CLOUDCAFE_TEST_KINESIS   |
#
# ensure_schemathesis installs schemathesis (the OpenAPI fuzzer of the contract test, no server) into
# the same virtualenv and exports CLOUDCAFE_TEST_SCHEMATHESIS; ensure_chaostoolkit installs Chaos
# Toolkit (`chaos run`, for the chaos experiments) there and exports CLOUDCAFE_CHAOSTOOLKIT.
#
# Each emulator runs in the background (nohup), logs to .cc-local/<name>.log and keeps its PID in
# .cc-local/<name>.pid; an emulator already running (PID alive and port answering) is reused. The
# emulators keep their data in memory only. Under CI=true an emulator that cannot be started is a
# failure (non-zero return); elsewhere a warning, and the tests that need it say SKIPPED.
# ARCHITECTURE.md ("Local emulators") says why these emulators and where each one is wrong.

# The logging and waiting helpers (cc_log, cc_fail_or_warn, cc_wait) live in services.sh.
if ! declare -F cc_wait >/dev/null 2>&1; then
  # shellcheck source=deploy/local/services.sh
  source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
fi

CC_LOCAL="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.cc-local"
CC_VENV="$CC_LOCAL/venv"
CC_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CC_NODE="$CC_LOCAL/node"
CC_MOTO_PORT=5056
CC_MOTO_SQS_PORT=5057
CC_MOTO_CLOUDWATCH_PORT=5058
CC_SECANTUS_PORT=27018
CC_KINESALITE_PORT=4567

# True if something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp, no extra tools).
cc_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if 127.0.0.1:PORT answers an HTTP request with any status.
cc_http_answers() {
  curl -s -o /dev/null -m 2 "http://127.0.0.1:$1/" 2>/dev/null
}

# True if deploy/local/moto_server.py (not a plain moto_server) answers on 127.0.0.1:PORT.
cc_moto_serializes() {
  curl -s -f -o /dev/null -m 2 "http://127.0.0.1:$1/cloudcafe/serial-dynamodb" 2>/dev/null
}

# True if the process whose PID is in .cc-local/NAME.pid is alive.
cc_pid_alive() {
  local pidfile="$CC_LOCAL/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# cc_start NAME COMMAND...: runs COMMAND in the background, detached from this shell, with its output
# in .cc-local/NAME.log and its PID in .cc-local/NAME.pid.
cc_start() {
  local name=$1; shift
  mkdir -p "$CC_LOCAL"
  nohup "$@" >"$CC_LOCAL/$name.log" 2>&1 </dev/null &
  echo $! >"$CC_LOCAL/$name.pid"
  disown 2>/dev/null || true
}

# Stops the emulator NAME started by cc_start (by its PID file only).
cc_stop() {
  local name=$1 pidfile="$CC_LOCAL/$1.pid"
  if cc_pid_alive "$name"; then
    local pid
    pid=$(cat "$pidfile")
    cc_log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# The virtualenv that holds the Python emulators.
cc_venv() {
  if [ ! -x "$CC_VENV/bin/python" ]; then
    local python
    python=$(command -v python3 || command -v python) || { cc_log "no python3 on PATH"; return 1; }
    cc_log "creating a virtualenv in $CC_VENV"
    mkdir -p "$CC_LOCAL"
    "$python" -m venv "$CC_VENV" >/dev/null || return 1
  fi
}

# cc_pip_install EXECUTABLE REQUIREMENT...: installs into the venv unless EXECUTABLE is already there.
cc_pip_install() {
  local executable=$1; shift
  cc_venv || return 1
  if [ -x "$CC_VENV/bin/$executable" ]; then
    return 0
  fi
  cc_log "pip install $*"
  "$CC_VENV/bin/python" -m pip install -q "$@" >"$CC_LOCAL/pip-$executable.log" 2>&1 || {
    cc_log "pip failed, see $CC_LOCAL/pip-$executable.log"
    return 1
  }
}

# moto runs from moto_server.py, which applies DynamoDB requests one at a time: moto's DynamoDB
# backend is not safe for concurrent writes. DynamoDB and SQS get a moto process each: moto's SQS
# long polls rescan their queue in a loop, and in a shared process they starved DynamoDB of the GIL
# (lease renewals of the Kinesis consumers took seconds).
ensure_moto() {
  cc_ensure_moto moto "$CC_MOTO_PORT" || return
  cc_ensure_moto moto-sqs "$CC_MOTO_SQS_PORT" || return
  cc_ensure_moto moto-cloudwatch "$CC_MOTO_CLOUDWATCH_PORT" || return
  # Outside CI a moto that could not start was a warning: leave its tests to skip.
  cc_moto_serializes "$CC_MOTO_PORT" && cc_moto_serializes "$CC_MOTO_SQS_PORT" \
    && cc_moto_serializes "$CC_MOTO_CLOUDWATCH_PORT" || return 0
  export CLOUDCAFE_TEST_DYNAMODB="http://127.0.0.1:$CC_MOTO_PORT"
  export CLOUDCAFE_TEST_SQS="http://127.0.0.1:$CC_MOTO_SQS_PORT"
  # SES and SNS share the SQS process: the notification tests read back what was sent there.
  export CLOUDCAFE_TEST_SES_SNS="http://127.0.0.1:$CC_MOTO_SQS_PORT"
  export CLOUDCAFE_TEST_CLOUDWATCH="http://127.0.0.1:$CC_MOTO_CLOUDWATCH_PORT"
  cc_log "moto ready: $CLOUDCAFE_TEST_DYNAMODB (DynamoDB), $CLOUDCAFE_TEST_SQS (SQS), $CLOUDCAFE_TEST_CLOUDWATCH (CloudWatch)"
}

# Starts (or reuses) one moto_server.py as NAME on PORT, and resets it.
cc_ensure_moto() {
  local name=$1 port=$2 url="http://127.0.0.1:$2"
  if cc_pid_alive "$name" && cc_moto_serializes "$port"; then
    cc_log "$name already running on $url"
  else
    cc_stop "$name"
  fi
  if cc_pid_alive "$name"; then
    :
  elif cc_port_open "$port"; then
    # Started by another checkout on this machine (an earlier run, or the developer's tree): reuse it
    # if it is moto, as ensure_postgres reuses a running server.
    cc_moto_serializes "$port" || {
      cc_fail_or_warn "port $port is taken by a process that is not deploy/local/moto_server.py"; return
    }
    cc_log "reusing the moto already serving $url"
  else
    cc_pip_install moto_server 'moto[server]==5.2.5' || { cc_fail_or_warn "moto cannot be installed"; return; }
    cc_log "starting $name on $url"
    cc_start "$name" "$CC_VENV/bin/python" "$CC_HERE/moto_server.py" --host 127.0.0.1 --port "$port"
    cc_wait 60 cc_moto_serializes "$port" || {
      cc_stop "$name"
      cc_fail_or_warn "$name did not start on $url (see $CC_LOCAL/$name.log)"; return
    }
  fi
  # Every run starts from an empty account: tests create their own tables under unique names anyway.
  curl -s -f -m 10 -X POST "$url/moto-api/reset" >/dev/null || { cc_fail_or_warn "$name did not reset"; return; }
}

# The Python clients deploy/local/verify_kinesis.py reads Kinesis with (clients none of us wrote).
ensure_python_clients() {
  cc_venv || { cc_fail_or_warn "no virtualenv for the Python clients"; return; }
  if ! "$CC_VENV/bin/python" -c 'import boto3, msgpack' 2>/dev/null; then
    cc_log "pip install boto3 msgpack"
    "$CC_VENV/bin/python" -m pip install -q boto3 msgpack >"$CC_LOCAL/pip-clients.log" 2>&1 || {
      cc_fail_or_warn "boto3/msgpack cannot be installed (see $CC_LOCAL/pip-clients.log)"; return
    }
  fi
  cc_log "Python clients ready: boto3, msgpack"
}

# schemathesis fuzzes a live node against its OpenAPI document (gateways/tests/it/contract.rs).
CC_SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  cc_venv || { cc_fail_or_warn "no virtualenv for schemathesis"; return; }
  local cli="$CC_VENV/bin/schemathesis"
  if ! "$cli" --version 2>/dev/null | grep -qF "$CC_SCHEMATHESIS_VERSION"; then
    cc_log "pip install schemathesis==$CC_SCHEMATHESIS_VERSION"
    "$CC_VENV/bin/python" -m pip install -q "schemathesis==$CC_SCHEMATHESIS_VERSION" >"$CC_LOCAL/pip-schemathesis.log" 2>&1 || {
      cc_fail_or_warn "schemathesis cannot be installed (see $CC_LOCAL/pip-schemathesis.log)"; return
    }
  fi
  export CLOUDCAFE_TEST_SCHEMATHESIS="$cli"
  cc_log "schemathesis ready: $("$cli" --version)"
}

# Chaos Toolkit runs the chaos experiments (chaos/experiments/*.json) for `cloudcafe chaos run`.
CC_CHAOSTOOLKIT_VERSION=1.19.0
ensure_chaostoolkit() {
  cc_venv || { cc_fail_or_warn "no virtualenv for Chaos Toolkit"; return; }
  local cli="$CC_VENV/bin/chaos"
  if ! "$cli" --version 2>/dev/null | grep -qF "$CC_CHAOSTOOLKIT_VERSION"; then
    cc_log "pip install chaostoolkit==$CC_CHAOSTOOLKIT_VERSION"
    "$CC_VENV/bin/python" -m pip install -q "chaostoolkit==$CC_CHAOSTOOLKIT_VERSION" >"$CC_LOCAL/pip-chaostoolkit.log" 2>&1 || {
      cc_fail_or_warn "Chaos Toolkit cannot be installed (see $CC_LOCAL/pip-chaostoolkit.log)"; return
    }
  fi
  export CLOUDCAFE_CHAOSTOOLKIT="$cli"
  cc_log "Chaos Toolkit ready: $("$cli" --version)"
}

# The offline checks of the deployment as code (deploy/local/iac_checks.sh): checkov (its own
# virtualenv: it pins many packages the emulators' virtualenv also holds) with the HCL parser it
# ships (bc-python-hcl2), and HashiCorp's HCL formatter compiled to WebAssembly (@cdktf/hcl-tools,
# what `terraform fmt` runs), since no Terraform binary can be downloaded here.
CC_CHECKOV_VERSION=3.3.30
CC_HCL_TOOLS_VERSION=0.21.0
ensure_iac_tools() {
  local venv="$CC_LOCAL/iac-venv"
  if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qxF "$CC_CHECKOV_VERSION"; then
    local python
    python=$(command -v python3 || command -v python) || { cc_fail_or_warn "no python3 for checkov"; return; }
    mkdir -p "$CC_LOCAL"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >/dev/null || { cc_fail_or_warn "no virtualenv for checkov"; return; }
    cc_log "pip install checkov==$CC_CHECKOV_VERSION"
    "$venv/bin/python" -m pip install -q "checkov==$CC_CHECKOV_VERSION" >"$CC_LOCAL/pip-checkov.log" 2>&1 || {
      cc_fail_or_warn "checkov cannot be installed (see $CC_LOCAL/pip-checkov.log)"; return
    }
  fi
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    cc_fail_or_warn "node and npm are needed for the HCL formatter"; return
  }
  if ! grep -qF "\"version\": \"$CC_HCL_TOOLS_VERSION\"" "$CC_NODE/node_modules/@cdktf/hcl-tools/package.json" 2>/dev/null; then
    cc_log "npm install @cdktf/hcl-tools@$CC_HCL_TOOLS_VERSION"
    mkdir -p "$CC_NODE"
    (cd "$CC_NODE" && npm install --no-audit --no-fund --silent "@cdktf/hcl-tools@$CC_HCL_TOOLS_VERSION") \
      >"$CC_LOCAL/npm-hcl-tools.log" 2>&1 || {
      cc_fail_or_warn "@cdktf/hcl-tools cannot be installed (see $CC_LOCAL/npm-hcl-tools.log)"; return
    }
  fi
  export CLOUDCAFE_CHECKOV="$venv/bin/checkov" CLOUDCAFE_IAC_PYTHON="$venv/bin/python" CLOUDCAFE_NODE_PATH="$CC_NODE/node_modules"
  cc_log "deployment checks ready: checkov $("$venv/bin/checkov" --version), @cdktf/hcl-tools $CC_HCL_TOOLS_VERSION"
}

# SecantusDB speaks the MongoDB wire protocol (standing in for DocumentDB), in memory.
ensure_secantusdb() {
  local port=$CC_SECANTUS_PORT
  if cc_pid_alive secantusdb && cc_port_open "$port"; then
    cc_log "secantusdb already running on 127.0.0.1:$port"
  else
    cc_stop secantusdb
  fi
  if cc_pid_alive secantusdb; then
    :
  elif cc_port_open "$port"; then
    # Started by another checkout on this machine: the tests' first command tells if it is not MongoDB.
    cc_log "reusing the MongoDB-wire server already on 127.0.0.1:$port"
  else
    cc_pip_install secantusd-py secantusdb || { cc_fail_or_warn "secantusdb cannot be installed"; return; }
    cc_log "starting secantusdb on 127.0.0.1:$port"
    cc_start secantusdb "$CC_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path :memory: --standalone
    cc_wait 60 cc_port_open "$port" || {
      cc_stop secantusdb
      cc_fail_or_warn "secantusdb did not start on 127.0.0.1:$port (see $CC_LOCAL/secantusdb.log)"; return
    }
  fi
  export CLOUDCAFE_TEST_MONGO="mongodb://127.0.0.1:$port/?directConnection=true"
  cc_log "secantusdb ready: $CLOUDCAFE_TEST_MONGO"
}

# Kinesalite serves Kinesis; moto does not (it drops records under concurrent PutRecords).
ensure_kinesalite() {
  local port=$CC_KINESALITE_PORT
  if cc_pid_alive kinesalite && cc_port_open "$port"; then
    cc_log "kinesalite already running on 127.0.0.1:$port"
  else
    cc_stop kinesalite
  fi
  # The package is needed either way: the outage test starts kinesalites of its own.
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    cc_fail_or_warn "node and npm are needed for kinesalite"; return
  }
  if [ ! -f "$CC_NODE/node_modules/kinesalite/package.json" ]; then
    cc_log "npm install kinesalite@3.3.3"
    mkdir -p "$CC_NODE"
    (cd "$CC_NODE" && npm install --no-audit --no-fund --silent kinesalite@3.3.3) \
      >"$CC_LOCAL/npm-kinesalite.log" 2>&1 || {
      cc_fail_or_warn "kinesalite cannot be installed (see $CC_LOCAL/npm-kinesalite.log)"; return
    }
  fi
  if cc_pid_alive kinesalite; then
    :
  elif cc_port_open "$port"; then
    # An unsigned Kinesis call: kinesalite answers it with its own JSON error type.
    curl -s -m 10 -X POST -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
      -H 'Content-Type: application/x-amz-json-1.1' -d '{}' "http://127.0.0.1:$port/" | grep -q MissingAuthenticationToken || {
      cc_fail_or_warn "port $port is taken by a process that is not kinesalite"; return
    }
    cc_log "reusing the kinesalite already serving 127.0.0.1:$port"
  else
    cc_log "starting kinesalite on 127.0.0.1:$port"
    (cd "$CC_NODE" && cc_start kinesalite node -e \
      "require('kinesalite')({createStreamMs:0,deleteStreamMs:0,updateStreamMs:0,shardLimit:100000}).listen($port,'127.0.0.1')")
    cc_wait 30 cc_port_open "$port" || {
      cc_stop kinesalite
      cc_fail_or_warn "kinesalite did not start on 127.0.0.1:$port (see $CC_LOCAL/kinesalite.log)"; return
    }
  fi
  export CLOUDCAFE_TEST_KINESIS="http://127.0.0.1:$port"
  cc_log "kinesalite ready: $CLOUDCAFE_TEST_KINESIS"
}

# Stops every emulator started by the functions above (by their PID files) and unsets the endpoints.
stop_emulators() {
  cc_stop moto
  cc_stop moto-sqs
  cc_stop moto-cloudwatch
  cc_stop secantusdb
  cc_stop kinesalite
  unset CLOUDCAFE_TEST_DYNAMODB CLOUDCAFE_TEST_SQS CLOUDCAFE_TEST_CLOUDWATCH CLOUDCAFE_TEST_MONGO CLOUDCAFE_TEST_KINESIS
}
