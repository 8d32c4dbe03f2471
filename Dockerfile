# sipas-stream container image.
#   docker build -t sipas-stream .
#   docker run --rm -e SIPAS__PII__HMAC_SECRET=... -e SIPAS__KAFKA__BROKERS=... sipas-stream
# See docker-compose.yml for a complete local stack (Kafka + ClickHouse + pipeline).

############################ builder ############################
FROM rust:1-bookworm AS builder

# rdkafka-sys builds its bundled librdkafka with the C toolchain; libz-sys links zlib.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1) Dependencies only, so that editing the sources does not rebuild them:
#    compile the locked dependency graph against placeholder sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin sipas \
 && rm -rf src \
           target/release/sipas* \
           target/release/deps/sipas* target/release/deps/libsipas* \
           target/release/.fingerprint/sipas-stream-*

# 2) The crate itself. config/ and schemas/ are embedded with include_str!.
COPY src ./src
COPY config ./config
COPY schemas ./schemas
RUN cargo build --release --locked --bin sipas \
 && cp target/release/sipas /usr/local/bin/sipas

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sipas \
 && useradd --system --uid 10001 --gid sipas --no-create-home --home-dir /app --shell /usr/sbin/nologin sipas

WORKDIR /app
# Read at run time relative to the working directory
# (contract.frameworks_dir = "config/frameworks", contract.schemas_dir = "schemas").
COPY --chown=root:root config ./config
COPY --chown=root:root schemas ./schemas
COPY --from=builder /usr/local/bin/sipas /usr/local/bin/sipas

USER sipas:sipas
# Prometheus /metrics; the default listen address (127.0.0.1:9100) is unreachable from
# outside the container, so listen on all interfaces unless overridden.
ENV SIPAS__METRICS__LISTEN=0.0.0.0:9100
EXPOSE 9100

ENTRYPOINT ["sipas"]
CMD ["run", "--setup"]
