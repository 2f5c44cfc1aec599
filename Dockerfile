# syntax=docker/dockerfile:1
#
# The botmedia container image: `botmedia serve`, the long-running bot, and nothing else.
#
#   DOCKER_BUILDKIT=1 docker build -t botmedia:0.1.0 .
#   docker run --rm -e BOTMEDIA_EMULATOR=http://host.docker.internal:8440 botmedia:0.1.0
#
# Two stages: the builder compiles the `botmedia` binary on the official Rust image (Debian
# bookworm, the toolchain this repository is developed with); the runtime stage is
# debian:bookworm-slim with ca-certificates and that one binary, run as an unprivileged user.
# The Kubernetes manifests in deploy/kubernetes run this image; deploy/README.md explains
# them. `scripts/deploy/validate.sh` (run by `make test`) checks the shape of this file.

# The workspace's rust-version (Cargo.toml) and the toolchain it is built and tested with.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# Builder: cargo build --profile dist (release with link-time optimisation, see Cargo.toml)
# of the botmedia binary only.
# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# cmake builds libopus (opusic-sys) and aws-lc (rustls's crypto) from source; the image has
# the C compiler and pkg-config already. Both libraries are linked statically, so the runtime
# stage needs none of this.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends cmake

WORKDIR /src
# The whole workspace (cargo resolves every member's manifest); .dockerignore keeps target/,
# .git/, the fuzz workspace, docs and the deployment files out of the context.
COPY . .

# Cache mounts keep the crates.io downloads and the target directory between builds, so a
# rebuild after a source change recompiles only what changed. The binary is copied out of
# the cached target dir (which is not part of the image layer) to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile dist -p botmedia-cli --bin botmedia --locked \
    && install -D -m 0755 target/dist/botmedia /out/botmedia

# ---------------------------------------------------------------------------------------------
# Runtime: Debian slim, ca-certificates, the binary, a fixed non-root user.
# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="botmedia" \
      org.opencontainers.image.description="App-hosted real-time media engine for calling bots: botmedia serve" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/botmedia" \
      org.opencontainers.image.documentation="https://example.invalid/botmedia/blob/main/deploy/README.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

# The binary links only glibc, libm and libgcc_s (all in the slim image; libopus and aws-lc
# are static). ca-certificates: rustls reads the system's roots for HTTPS to Graph and the
# identity platform. The user and group are fixed (10001) so the Kubernetes securityContext
# (runAsUser/fsGroup) and file ownership agree; the home is the working directory, where
# recordings go unless BOTMEDIA_RECORD_DIR says otherwise.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 botmedia \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/botmedia --no-create-home \
        --shell /usr/sbin/nologin botmedia \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/botmedia /var/lib/botmedia/recordings

COPY --from=builder /out/botmedia /usr/local/bin/botmedia

# Listeners for a container: every interface of the container's own network namespace. The
# API (calls, probes, metrics) is not authenticated: publish its port only to trusted callers.
ENV BOTMEDIA_WEBHOOK_LISTEN=0.0.0.0:9441 \
    BOTMEDIA_MEDIA_LISTEN=0.0.0.0:8445 \
    BOTMEDIA_API_LISTEN=0.0.0.0:9450 \
    BOTMEDIA_RECORD_DIR=/var/lib/botmedia/recordings

USER 10001:10001
WORKDIR /var/lib/botmedia

# 9441 the webhook (behind a TLS-terminating proxy or ingress), 8445 the media endpoint's
# HTTP(S) listener (the mpUri), 9450 the API (/healthz, /readyz, /metrics, /calls), and the
# UDP range ICE uses for media when BOTMEDIA_ICE_PORTS=40000-40999.
EXPOSE 9441/tcp 8445/tcp 9450/tcp 40000-40999/udp

# SIGTERM drains: no new calls, running calls go on for drain_grace_seconds (30), are hung up,
# and the process exits 0 once the service confirmed (hangup_timeout_seconds, 10). Give it
# that long before a SIGKILL (`docker stop -t 60`, terminationGracePeriodSeconds: 60).
STOPSIGNAL SIGTERM

ENTRYPOINT ["botmedia"]
CMD ["serve"]
