# syntax=docker/dockerfile:1
#
# Lockstep's image: a static binary on distroless, running as non-root.
#
#   docker build -t lockstep .                      (or: make image)
#   docker run --rm -p 8080:8080 -p 9090:9090 lockstep      one dev node
#   docker run --rm -v $PWD/node1.yaml:/etc/lockstep/lockstep.yaml:ro \
#     -v lockstep-data:/var/lib/lockstep -p 8081:8081 -p 9091:9091 -p 7001:7001 \
#     lockstep serve --config /etc/lockstep/lockstep.yaml              a member
#
# In a container the addresses of the configuration must bind 0.0.0.0 (or
# the container's address), and cluster.data_dir should be under
# /var/lib/lockstep, a volume owned by the image's user. Addresses that are
# not loopback need security.tls, or security.insecure: true to accept
# plaintext. See docs/operations.md and docs/security.md.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/lockstep ./cmd/lockstep \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lockstep /usr/local/bin/lockstep
# The data volume belongs to the image's user (nonroot, uid 65532).
COPY --from=build --chown=65532:65532 /out/data /var/lib/lockstep
USER 65532:65532
VOLUME ["/var/lib/lockstep"]
# API (Connect, gRPC, REST), metrics, Raft.
EXPOSE 8080 9090 7001
ENTRYPOINT ["/usr/local/bin/lockstep"]
# Without arguments: one dev node reachable from outside the container, in
# plaintext (--insecure: it binds 0.0.0.0; it warns at start).
CMD ["serve", "--dev", "--insecure", "--api-address", "0.0.0.0:8080", "--metrics-address", "0.0.0.0:9090", \
     "--data-dir", "/var/lib/lockstep/dev"]
