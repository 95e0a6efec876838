# syntax=docker/dockerfile:1
# Minotaur node image.
#
# Two ways to build it (see README "Docker"):
#   (a) From source, with access to a container registry (multi-stage; default target):
#         docker build -t minotaur .
#   (b) Offline, with no image to pull: a FROM-scratch image around a static musl
#       binary built on the host (scripts/docker-image.sh does all of it):
#         docker build --target local -t minotaur <context with dist/>
#
# Stages are ordered so that `--target local` stops before any stage that pulls.

# ---- base: the runtime configuration shared by both final images -------------
FROM scratch AS base
# Release label the node reports as its version (empty: the crate version).
ARG MINOTAUR_RELEASE=""
ENV MINOTAUR_RELEASE=${MINOTAUR_RELEASE} \
    MINOTAUR_LISTEN=0.0.0.0:7878 \
    MINOTAUR_ADMIN_LISTEN=0.0.0.0:7879 \
    MINOTAUR_GAMES_DIR=/games \
    MINOTAUR_DATA_DIR=/data \
    RUST_LOG=info
# What listens: 7878 players (lobby, websocket, health checks); 7879 the operator
# listener (admin API behind its token, /metrics). Inside the container 7879 binds
# 0.0.0.0 so that a port mapping reaches it: publish it on the host's loopback only
# (`-p 127.0.0.1:7879:7879`), never with `-P`. A node talks to PostgreSQL and to no
# other node.
EXPOSE 7878/tcp 7879/tcp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=2s --timeout=2s --start-period=2s --retries=3 \
    CMD ["/minotaur", "health", "--url", "http://127.0.0.1:7878/readyz"]
USER 10001:10001
ENTRYPOINT ["/minotaur"]
CMD ["serve"]

# ---- local: prebuilt static binary + games from the build context -------------
FROM base AS local
COPY --chown=10001:10001 dist/ /

# ---- build: compile from source (needs the rust image from a registry) -------
FROM rust:1-bookworm AS build
RUN rustup target add wasm32-unknown-unknown x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash scripts/build-games.sh \
 && cargo build --release --locked --target x86_64-unknown-linux-musl -p minotaur-host \
 && mkdir -p /dist/games /dist/data \
 && cp target/x86_64-unknown-linux-musl/release/minotaur /dist/minotaur \
 && cp games/dist/tictactoe.wasm games/dist/arena.wasm /dist/games/

# ---- source: the default target -----------------------------------------------
FROM base AS source
COPY --from=build --chown=10001:10001 /dist/ /
