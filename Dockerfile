# One image for every role of drone-delivery: `docker run IMAGE command-api …`,
# `… projector`, `… query-api`, `… workflow`, `… notifier`, `… serve`.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source (bundled by rdkafka-sys): it needs make and a C compiler,
# which the rust image has, and cmake-free mklove.
COPY . .
RUN cargo build --release --locked --bin drone-delivery \
 && cp target/release/drone-delivery /drone-delivery

FROM debian:bookworm-slim
# libssl3: the binary links OpenSSL (TLS and SCRAM for Kafka, HTTPS to the schema registry).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home drones
COPY --from=build /drone-delivery /usr/local/bin/drone-delivery
USER drones
WORKDIR /data
ENV DRONE_DELIVERY_LISTEN=0.0.0.0:8080 DRONE_DELIVERY_DATA_DIR=/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["drone-delivery"]
CMD ["serve"]
