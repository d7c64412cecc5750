#!/usr/bin/env bash
# Builds the Debian package of mjpegd into target/debian/ and checks what is in it:
#   bash scripts/package.sh
# Installs the build dependencies (scripts/setup.sh) and cargo-deb if missing, builds a release binary,
# generates the man page and the bash/zsh/fish completions from it, checks the default config with
# `mjpegd check-config`, packages with cargo-deb (metadata in crates/mjpegd/Cargo.toml: the binary, the
# units and sysusers.d file of packaging/systemd/, /etc/mjpegd/mjpegd.toml as a conffile), then lists the
# package with dpkg-deb -c / -I and fails if anything expected is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked -p mjpegd
bin=target/release/mjpegd
gen=target/package-assets
rm -rf "$gen"
mkdir -p "$gen/completions"
"$bin" man | gzip -9n > "$gen/mjpegd.1.gz"
"$bin" completions bash > "$gen/completions/mjpegd"
"$bin" completions zsh > "$gen/completions/_mjpegd"
"$bin" completions fish > "$gen/completions/mjpegd.fish"
"$bin" check-config packaging/mjpegd.toml > /dev/null
cargo deb -p mjpegd --no-build --no-dbgsym --strip
version=$(sed -n 's/^version = "\(.*\)"/\1/p' crates/mjpegd/Cargo.toml | head -n1)
deb=$(ls -t target/debian/mjpegd_"${version}"-*_*.deb | head -n1)

echo "== $deb"
dpkg-deb -I "$deb"
echo "== contents"
dpkg-deb -c "$deb"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
missing=0
for path in \
  ./usr/bin/mjpegd \
  ./usr/lib/systemd/system/mjpegd.service \
  ./usr/lib/systemd/system/mjpegd.socket \
  ./usr/lib/sysusers.d/mjpegd.conf \
  ./etc/mjpegd/mjpegd.toml \
  ./usr/share/man/man1/mjpegd.1.gz \
  ./usr/share/bash-completion/completions/mjpegd \
  ./usr/share/zsh/vendor-completions/_mjpegd \
  ./usr/share/fish/vendor_completions.d/mjpegd.fish; do
  grep -qx "$path" <<<"$contents" || { echo "package.sh: missing $path" >&2; missing=1; }
done
control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
dpkg-deb -e "$deb" "$control"
grep -qx /etc/mjpegd/mjpegd.toml "$control/conffiles" || { echo "package.sh: mjpegd.toml is not a conffile" >&2; missing=1; }
grep -q "systemd-sysusers" "$control/postinst" || { echo "package.sh: postinst does not create the user" >&2; missing=1; }
if grep -q "deb-systemd-invoke start" "$control/postinst"; then
  echo "package.sh: postinst starts the service unasked" >&2; missing=1
fi
[ "$missing" = 0 ] || exit 1
echo "== ok: $deb"
