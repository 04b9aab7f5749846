# Riposte's operator image: one static binary on an empty base, run as 65532:65532.
#
#   docker build -t ghcr.io/riposte-dev/riposte:0.1.0 .
#
# builds the image that charts/riposte installs by default (the tag is the chart's
# appVersion). See the README ("Running Riposte in a cluster") for loading it into kind or
# minikube, or pushing it. Needs BuildKit (Docker's default builder) or buildah, for the
# cache mounts.

# Any image with cargo (Rust >= the workspace's rust-version), a C compiler (ring builds
# some C and assembly), clang with libbpf's headers (the node sensor's BPF programs are
# compiled from source), and make, pkg-config, OpenSSL's headers and a C++ compiler
# (librdkafka, for the Event Hubs consumer, is built from source and linked statically; its
# configure requires c++); installed below when the image lacks them. The default is the official Rust image; a machine that
# cannot reach a registry passes a local one (tests/src/node/riposte_image.rs does).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
RUN (command -v clang-19 && test -e /usr/include/bpf/bpf_helpers.h && command -v make && command -v pkg-config \
        && command -v c++ && test -e /usr/include/openssl/ssl.h) >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends clang-19 libbpf-dev make pkg-config libssl-dev g++ \
        && rm -rf /var/lib/apt/lists/*)
COPY . .
# crt-static links glibc statically (the binary runs on the empty base); --target keeps the
# flag off build scripts and proc macros, which must stay dynamic. The registry and target
# directories are build caches: a rebuild recompiles only what changed.
RUN --mount=type=cache,id=riposte-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=riposte-cargo-target,target=/src/target \
    set -eu; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked -p riposte --bin riposte --target "$target"; \
    mkdir -p /out; \
    cp "target/$target/release/riposte" /out/riposte

FROM scratch
COPY --from=build /out/riposte /riposte
# The chart's pod runs as this user too (runAsNonRoot, runAsUser 65532).
USER 65532:65532
ENTRYPOINT ["/riposte"]
