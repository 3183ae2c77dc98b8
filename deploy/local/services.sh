#!/usr/bin/env bash
# Installs (from Debian packages) and starts the local servers the integration tests talk to, then
# exports their URLs. Sourced by deploy/local/test.sh; usable by hand: `source deploy/local/services.sh && ensure_postgres`.
#
# Under CI=true a server that cannot be started is a failure; elsewhere the tests that need it say SKIPPED.

cc_log() { printf '[services] %s\n' "$*" >&2; }

cc_fail_or_warn() {
  if [ "${CI:-}" = "true" ]; then
    cc_log "FATAL: $*"
    return 1
  fi
  cc_log "WARNING: $* (tests that need it will be skipped)"
  return 0
}

cc_apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  cc_log "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

cc_wait() { # cc_wait SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

ensure_postgres() {
  local host=127.0.0.1 port=5432
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_isready >/dev/null 2>&1; then
    cc_apt_install postgresql || { cc_fail_or_warn "PostgreSQL is not installed and cannot be installed"; return; }
  fi
  if ! pg_isready -h "$host" -p "$port" >/dev/null 2>&1; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
      cc_apt_install postgresql || { cc_fail_or_warn "no PostgreSQL cluster and cannot install one"; return; }
      version=$(ls /etc/postgresql | sort -V | tail -n 1)
    fi
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # A freshly installed cluster asks for passwords on TCP; the tests connect as postgres over loopback.
    if [ -f "$hba" ] && ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
      cc_log "allowing trust auth from 127.0.0.1 in $hba (test machine)"
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    cc_log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
    cc_wait 30 pg_isready -h "$host" -p "$port" || { cc_fail_or_warn "PostgreSQL did not start on $host:$port"; return; }
  fi
  export CLOUDCAFE_TEST_PG="postgres://postgres@$host:$port/postgres"
  if command -v psql >/dev/null 2>&1 && ! psql "$CLOUDCAFE_TEST_PG" -Atc 'select 1' >/dev/null 2>&1; then
    unset CLOUDCAFE_TEST_PG
    cc_fail_or_warn "PostgreSQL answers on $host:$port but does not let postgres in without a password"
    return
  fi
  cc_log "PostgreSQL ready: $CLOUDCAFE_TEST_PG"
}

ensure_redis() {
  local port=6379
  if ! command -v redis-server >/dev/null 2>&1; then
    cc_apt_install redis-server || { cc_fail_or_warn "Redis is not installed and cannot be installed"; return; }
  fi
  if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
    cc_log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    cc_wait 15 redis-cli -h 127.0.0.1 -p "$port" ping || { cc_fail_or_warn "Redis did not start on 127.0.0.1:$port"; return; }
  fi
  export CLOUDCAFE_TEST_REDIS="redis://127.0.0.1:$port"
  cc_log "Redis ready: $CLOUDCAFE_TEST_REDIS"
}

ensure_chromium() {
  # The flood report's browser test opens report.html headless and checks every plot drew its points.
  local bin=/usr/bin/chromium
  if [ ! -x "$bin" ]; then
    cc_apt_install chromium || { cc_fail_or_warn "Chromium is not installed and cannot be installed"; return; }
  fi
  [ -x "$bin" ] || { cc_fail_or_warn "Chromium installed but $bin is missing"; return; }
  export CLOUDCAFE_TEST_CHROMIUM="$bin"
  cc_log "Chromium ready: $CLOUDCAFE_TEST_CHROMIUM"
}

ensure_haproxy() {
  # The local cluster's load balancer (deploy/local/cluster.sh), configured as the ALB is.
  if ! command -v haproxy >/dev/null 2>&1; then
    cc_apt_install haproxy || { cc_fail_or_warn "HAProxy is not installed and cannot be installed"; return; }
  fi
  command -v haproxy >/dev/null 2>&1 || { cc_fail_or_warn "HAProxy installed but not on PATH"; return; }
  export CLOUDCAFE_TEST_HAPROXY="$(command -v haproxy)"
  cc_log "HAProxy ready: $(haproxy -v | head -1)"
}
