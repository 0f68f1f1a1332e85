#!/bin/sh
# Builds the tracer image with the local dockerd: the binary plus the shared
# libraries `ldd` says it needs (glibc's libc, libm, libgcc_s, the loader),
# at their paths, FROM scratch.
#   deploy/build-image.sh [TRACER_BINARY] [TAG]
set -eu
bin=${1:-target/release/tracer}
tag=${2:-tracer:latest}
here=$(cd "$(dirname "$0")" && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/etc"
cp "$bin" "$ctx/rootfs/usr/local/bin/tracer"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
# Name resolution for tcp://HOST:PORT outputs.
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
