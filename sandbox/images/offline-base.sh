#!/usr/bin/env bash
# Build a Debian base image without any registry: debootstrap a minimal root and `docker import` it.
#
#   sandbox/images/offline-base.sh [IMAGE] [SUITE]
#
# IMAGE defaults to mlgrade-base:bookworm, SUITE to bookworm (its python3 is 3.11). Needs root,
# debootstrap (apt-get install debootstrap), a running Docker engine and a Debian mirror
# (MIRROR, default http://deb.debian.org/debian; a local apt proxy or mirror works). The result
# holds python3, python3-venv and ca-certificates: enough as BASE for the CPU Dockerfile:
#
#   mlgrade image build --base mlgrade-base:bookworm --wheelhouse DIR
set -euo pipefail

IMAGE="${1:-mlgrade-base:bookworm}"
SUITE="${2:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"

command -v debootstrap >/dev/null || { echo "offline-base: debootstrap is missing: apt-get install debootstrap" >&2; exit 3; }
"$DOCKER" version >/dev/null 2>&1 || { echo "offline-base: no Docker engine answers: start dockerd (or systemctl start docker)" >&2; exit 3; }

ROOT="$(mktemp -d /tmp/mlgrade-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT

echo "offline-base: debootstrap $SUITE (minbase) from $MIRROR" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
# Nothing of apt's caches or lists is needed in the image.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*

echo "offline-base: importing as $IMAGE" >&2
tar --numeric-owner -C "$ROOT" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "mlgrade offline base: debootstrap $SUITE minbase + python3, python3-venv, ca-certificates" \
    - "$IMAGE" >/dev/null
echo "offline-base: $IMAGE $("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE")"
