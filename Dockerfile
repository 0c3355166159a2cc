# syntax=docker/dockerfile:1
#
# Lockstep's image: the static binary on an empty base (scratch), with a
# passwd/group entry for its non-root user (uid 65532) and a data volume that
# user owns: nothing else, nothing to patch.
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
# The version the binary names (lockstep version, cluster status); make image
# passes the checkout's `git describe`. Empty: the binary says "devel".
ARG LOCKSTEP_VERSION=
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w ${LOCKSTEP_VERSION:+-X github.com/lockstepd/lockstep/rpc.linkedVersion=${LOCKSTEP_VERSION}}" \
      -o /out/lockstep ./cmd/lockstep \
 && mkdir -p /out/data /out/etc \
 && echo 'nonroot:x:65532:65532:lockstep:/var/lib/lockstep:/sbin/nologin' > /out/etc/passwd \
 && echo 'nonroot:x:65532:' > /out/etc/group

# make test-image builds this Dockerfile with the binary and files of a
# local build in place of the stage above (buildah --build-context
# build=DIR), so the test needs no registry; DIR holds what /out holds.
FROM scratch
COPY --from=build /out/etc/passwd /out/etc/group /etc/
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
