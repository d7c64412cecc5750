#!/usr/bin/env bash
# Installs what building and testing mjpegd needs on a fresh Debian/Ubuntu machine (idempotent).
#   cmake, nasm       libjpeg-turbo, built from source by the turbojpeg crate
#   libclang-dev      bindings of the v4l crate (V4L2 cameras)
#   fuse3, libfuse3-dev, pkg-config   the fake V4L2 camera used by tests and benchmarks
#   ffmpeg            tests of the pipe source and player compatibility
#   libjpeg-turbo-progs   jpegtran, the reference the tests of --rotate/--flip compare with
#   ustreamer         the peer the benchmarks compare against
#   chromium          the test of what a browser really shows
#   python3-pip       Python's playwright (from PyPI, below): the page tests drive that chromium with it
#   systemd           systemd-socket-activate, systemd-analyze verify and systemd-sysusers for the tests
#                     of socket activation, the units and the service user (nothing is started)
#   man-db            man(1), which checks the generated man page (and systemd-analyze its Documentation=)
#   nginx-light, caddy, haproxy   the tests of the recipes in docs/recipes (proxies in front, scale-out);
#                     started by the tests themselves on loopback, never as system services
#   apache2           a real HTTP Digest server (mod_auth_digest) in front of a stream, for the relay's Digest tests
#   mkvtoolnix        mkvextract and mkvpropedit, which must accept every finished recording
set -euo pipefail
packages=(cmake nasm pkg-config libclang-dev fuse3 libfuse3-dev ffmpeg libjpeg-turbo-progs ustreamer curl chromium python3-pip systemd man-db nginx-light caddy haproxy apache2 mkvtoolnix)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  # Packages with a service (nginx, caddy, haproxy) must not start it: where no policy says otherwise,
  # one is put in place for the install and removed after.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
fi
# playwright's own browser download is not used: the tests launch Debian's /usr/bin/chromium.
if ! python3 -c 'import playwright' 2>/dev/null; then
  echo "setup: installing playwright (Python)" >&2
  python3 -m pip install --quiet playwright 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages playwright
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
