#!/usr/bin/env bash
# make test-image: build the real Dockerfile with buildah (no daemon, no
# registry: the local binary stands in for the build stage), run the image's
# default command, and check it from outside. Installs buildah with apt-get
# when missing; removes its containers and images; bounded in time.
set -euo pipefail

IMAGE=localhost/lockstep:test-image
MAX_BYTES=$((40 * 1000 * 1000))
B=(buildah --storage-driver vfs)
work=$(mktemp -d)
ctr=""
runner=""

cleanup() {
	if [ -n "$runner" ]; then
		kill -- "-$runner" 2>/dev/null || kill "$runner" 2>/dev/null || true
		wait "$runner" 2>/dev/null || true
	fi
	[ -n "$ctr" ] && "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true
	"${B[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "test-image: FAILED: $*" >&2; [ -f "$work/run.log" ] && tail -20 "$work/run.log" >&2; exit 1; }

if ! command -v buildah >/dev/null; then
	echo "test-image: installing buildah (apt-get)"
	timeout 600 apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq buildah >/dev/null
fi

for port in 8080 9090; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		fail "port $port on 127.0.0.1 is in use: the image's default command binds it; stop what listens there (make run?)"
	fi
done

# The build stage's output, made with the local Go: what /out holds in the
# Dockerfile's build stage. make test-image builds the binary once as
# bin/image/lockstep and names it in IMAGE_BIN; run alone, this builds it.
mkdir -p "$work/ctx/out/etc" "$work/ctx/out/data"
if [ -n "${IMAGE_BIN:-}" ]; then
	cp "$IMAGE_BIN" "$work/ctx/out/lockstep"
else
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/ctx/out/lockstep" ./cmd/lockstep
fi
echo 'nonroot:x:65532:65532:lockstep:/var/lib/lockstep:/sbin/nologin' > "$work/ctx/out/etc/passwd"
echo 'nonroot:x:65532:' > "$work/ctx/out/etc/group"

timeout 300 "${B[@]}" build --quiet --isolation chroot --build-context "build=$work/ctx" -t "$IMAGE" -f Dockerfile . >/dev/null \
	|| fail "buildah could not build the Dockerfile"

ctr=$("${B[@]}" from "$IMAGE")
size=$(du -sb "$("${B[@]}" mount "$ctr")" | cut -f1)
"${B[@]}" umount "$ctr" >/dev/null
[ "$size" -lt "$MAX_BYTES" ] || fail "the image holds $size bytes, more than $MAX_BYTES"

# The image's own entrypoint and command, as docker run would start them.
entry=$("${B[@]}" inspect --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")
cmd=$("${B[@]}" inspect --format '{{range .OCIv1.Config.Cmd}}{{.}} {{end}}' "$IMAGE")
setsid timeout 120 "${B[@]}" run --isolation chroot "$ctr" -- $entry $cmd > "$work/run.log" 2>&1 &
runner=$!

api=http://127.0.0.1:8080
for _ in $(seq 1 100); do
	curl -fsS -m 2 "$api/health" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fsS -m 2 "$api/health" | grep -q '"serving"' || fail "/health did not answer serving"

acq=$(curl -fsS -m 5 -X POST "$api/locks/image-test/acquire" -d '{"owner":"test-image","ttl_seconds":30}')
echo "$acq" | grep -q '"acquired":true' || fail "acquire answered: $acq"
tok=$(echo "$acq" | sed -n 's/.*"fencing_token":"\([0-9]*\)".*/\1/p')
rel=$(curl -fsS -m 5 -X POST "$api/locks/image-test/release" -d "{\"owner\":\"test-image\",\"fencing_token\":\"$tok\"}")
echo "$rel" | grep -q '"released":true' || fail "release answered: $rel"

# Read the whole page first: grep -q stops at the first match, and under
# pipefail curl's failed write of the rest would fail the check.
# The version stamped in at link time (make's LOCKSTEP_VERSION) reaches
# the cluster's status; a binary without one says "devel".
status=$(curl -fsS -m 5 "$api/cluster/status")
version=$(echo "$status" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
[ -n "$version" ] || fail "/cluster/status names no version: $status"

metrics=$(curl -fsS -m 5 http://127.0.0.1:9090/metrics)
grep -q '^lock_acquisitions_total' <<<"$metrics" || fail "/metrics has no lock_acquisitions_total"

pid=$(pgrep -f 'buildah-chroot-exec /usr/local/bin/lockstep' | head -1)
[ -n "$pid" ] || fail "no lockstep process found"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "the server runs as uid $uid, not 65532"

echo "test-image: ok (image $size bytes, version $version, serving as uid $uid, health, lock, metrics)"
