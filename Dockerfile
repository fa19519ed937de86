# One image for the worker and the simulator: `ai-failover worker` / `ai-failover simulate`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ai-failover

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ai-failover /usr/local/bin/ai-failover
COPY config/ /etc/ai-failover/
USER nobody
ENTRYPOINT ["ai-failover"]
