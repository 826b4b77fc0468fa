# The ads back end example as an image: built in a Rust image, run from a slim Debian one as
# an unprivileged user. `docker compose up` (compose.yaml) runs it with Redis, PostgreSQL,
# Prometheus and Grafana; on its own:
#   docker build -t perf-ads . && docker run -p 8000:8000 perf-ads
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and the build between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --example ads_backend \
    && cp target/release/examples/ads_backend /usr/local/bin/ads_backend

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ads
COPY --from=build /usr/local/bin/ads_backend /usr/local/bin/ads_backend
USER 10001:10001
# Listens on every interface inside the container; logs are JSON lines for a collector.
ENV ADS_ADDR=0.0.0.0:8000 \
    ADS_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8000
# `docker stop` sends SIGTERM: the service finishes its requests and drains its tasks.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ads_backend"]
