# sipas-stream container image.
#   docker build -t sipas-stream .
#   docker build --build-arg FEATURES=kafka-ssl -t sipas-stream .    # TLS/SASL to Kafka
#   docker run --rm -v "$PWD/secrets/hmac_secret:/run/secrets/hmac_secret:ro" \
#     -e SIPAS__PII__HMAC_SECRET_FILE=/run/secrets/hmac_secret -e SIPAS__KAFKA__BROKERS=... sipas-stream
# See docker-compose.yml for a complete local stack (Kafka + ClickHouse + pipeline).

# The toolchain and the runtime are pinned to exact releases, both on Debian 13 (trixie), so
# the binary runs against the glibc and libraries it was linked with. Bump them together.

############################ builder ############################
FROM rust:1.99.0-trixie AS builder

# Cargo features, space- or comma-separated (e.g. "kafka-ssl"); empty = the defaults.
ARG FEATURES=""

# rdkafka-sys builds its bundled librdkafka with the C toolchain; libz-sys links zlib;
# openssl-sys (feature kafka-ssl) needs the OpenSSL headers, found through pkg-config.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1) Dependencies only, so that editing the sources does not rebuild them:
#    compile the locked dependency graph (with the same features) against placeholder sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin sipas ${FEATURES:+--features "$FEATURES"} \
 && rm -rf src \
           target/release/sipas* \
           target/release/deps/sipas* target/release/deps/libsipas* \
           target/release/.fingerprint/sipas-stream-*

# 2) The crate itself. config/provinces.csv and schemas/ are embedded with include_str!.
COPY src ./src
COPY config/provinces.csv ./config/provinces.csv
COPY schemas ./schemas
RUN cargo build --release --locked --bin sipas ${FEATURES:+--features "$FEATURES"} \
 && cp target/release/sipas /usr/local/bin/sipas

############################ runtime ############################
FROM debian:13.7-slim AS runtime

# ca-certificates for TLS to Kafka or a Schema Registry; libssl3t64 is what a kafka-ssl
# build links (a default build does not need it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libssl3t64 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sipas \
 && useradd --system --uid 10001 --gid sipas --no-create-home --home-dir /app --shell /usr/sbin/nologin sipas

WORKDIR /app
# Read at run time relative to the working directory
# (contract.frameworks_dir = "config/frameworks", contract.schemas_dir = "schemas").
# Only these: no configuration file ships in the image; the environment configures it.
COPY --chown=root:root config/frameworks ./config/frameworks
COPY --chown=root:root schemas ./schemas
COPY --from=builder /usr/local/bin/sipas /usr/local/bin/sipas

USER sipas:sipas
# Prometheus /metrics and /health of `sipas run`; the default listen address (127.0.0.1:9100)
# is unreachable from outside the container, so listen on all interfaces unless overridden.
ENV SIPAS__METRICS__LISTEN=0.0.0.0:9100
EXPOSE 9100

ENTRYPOINT ["sipas"]
CMD ["run", "--setup"]
