#!/usr/bin/env bash
# Installs what building and testing mjpegd needs on a fresh Debian/Ubuntu machine (idempotent).
#   cmake, nasm       libjpeg-turbo, built from source by the turbojpeg crate
#   libclang-dev      bindings of the v4l crate (V4L2 cameras)
#   fuse3, libfuse3-dev, pkg-config   the fake V4L2 camera used by tests and benchmarks
#   ffmpeg            tests of the pipe source and player compatibility
#   ustreamer         the peer the benchmarks compare against
#   chromium          the test of what a browser really shows
#   systemd           systemd-socket-activate, systemd-analyze verify and systemd-sysusers for the tests
#                     of socket activation, the units and the service user (nothing is started)
#   man-db            man(1), which checks the generated man page (and systemd-analyze its Documentation=)
set -euo pipefail
packages=(cmake nasm pkg-config libclang-dev fuse3 libfuse3-dev ffmpeg ustreamer curl chromium systemd man-db)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
