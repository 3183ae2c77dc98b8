#!/usr/bin/env bash
# A local CloudCafe cluster the way it runs on AWS, for the chaos experiments and `flood --target`:
#
#   deploy/local/cluster.sh up [N] [-- serve flags]   N nodes (default 3) behind HAProxy
#   deploy/local/cluster.sh status
#   deploy/local/cluster.sh down                       stops exactly what `up` started (by PID)
#
# `up` installs what the cluster needs (HAProxy from Debian, Chaos Toolkit from PyPI, the PostgreSQL
# and Redis servers), builds the release binary if it is missing (CLOUDCAFE_BIN names another), and
# runs `cloudcafe cluster up`: the cluster's own PostgreSQL (the journal) and Redis (the cache) on free
# ports, the fault proxy between the nodes and them, N `serve` nodes, and HAProxy with the ALB's
# path rules and health checks. Everything lives in .cc-local/cluster/ (cluster.json, logs, data).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
source deploy/local/emulators.sh

BIN=${CLOUDCAFE_BIN:-target/release/cloudcafe}
export CLOUDCAFE_CLUSTER=${CLOUDCAFE_CLUSTER:-.cc-local/cluster}
command=${1:-status}
[ $# -gt 0 ] && shift

case $command in
  up)
    nodes=3
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then nodes=$1; shift; fi
    [ "${1:-}" = "--" ] && shift
    ensure_postgres || exit 1
    ensure_redis || exit 1
    ensure_haproxy || exit 1
    ensure_chaostoolkit || exit 1
    if [ ! -x "$BIN" ]; then
      cc_log "building $BIN"
      cargo build --release --locked --bin cloudcafe
    fi
    "$BIN" cluster up --nodes "$nodes" -- "$@"
    echo "export CLOUDCAFE_CHAOSTOOLKIT=$CLOUDCAFE_CHAOSTOOLKIT"
    ;;
  down | status)
    exec "$BIN" cluster "$command"
    ;;
  *)
    echo "usage: $0 up [N] [-- serve flags] | status | down" >&2
    exit 2
    ;;
esac
