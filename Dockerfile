# syntax=docker/dockerfile:1.7
# The `cloudcafe` node image: `cloudcafe serve` with the AWS adapters (--features cloud).
#
#   docker build -t cloudcafe:0.1.0 .
#   docker run --rm -p 8080:8080 -e CLOUDCAFE_AUTH=jwt cloudcafe:0.1.0   # embedded journal in /tmp
#
# Four stages: cargo-chef's recipe of the dependencies, the dependencies built from it alone (a
# layer that changes only with Cargo.toml/Cargo.lock), the binary, and a slim runtime with the
# binary, the system's CA roots, the RDS CA bundle and curl for the health check.
# README.md ("Deploying to AWS") builds and pushes it; no Docker engine runs in CI, where checkov
# lints this file.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency graph only: this stage's output changes when a manifest or the lock file does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# vendor/ holds a patched crate the manifests point at ([patch.crates-io]).
COPY vendor vendor
RUN cargo chef cook --release --locked --features gateways/cloud --bin cloudcafe --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --features gateways/cloud --bin cloudcafe \
    && cp target/release/cloudcafe /usr/local/bin/cloudcafe

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to Redshift, ElastiCache, the AWS APIs and a JWKS URL; curl: HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    # Aurora's and DocumentDB's certificates chain to the RDS CAs, not to a public root.
    && mkdir -p /etc/cloudcafe \
    && curl -fsSL -o /etc/cloudcafe/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    && chmod 0644 /etc/cloudcafe/rds-global-bundle.pem \
    && groupadd --system --gid 10001 cloudcafe \
    && useradd --system --uid 10001 --gid cloudcafe --home-dir /var/lib/cloudcafe --create-home cloudcafe
COPY --from=build /usr/local/bin/cloudcafe /usr/local/bin/cloudcafe

USER 10001:10001
WORKDIR /var/lib/cloudcafe
ENV CLOUDCAFE_LISTEN=0.0.0.0:8080 \
    CLOUDCAFE_DATA_DIR=/var/lib/cloudcafe \
    CLOUDCAFE_LOG_FORMAT=json
EXPOSE 8080

# The node stops gracefully on SIGTERM: no new connections, in-flight requests get 5 s, then the
# followers stop at their next step (ECS sends SIGTERM, then SIGKILL after the task's stopTimeout).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["/usr/local/bin/cloudcafe"]
CMD ["serve"]
