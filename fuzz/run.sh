#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 300) with libFuzzer, starting from and adding to the kept
# corpus, then minimises the corpus. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# A crash is written to fuzz/artifacts/<target>/: copy it into fuzz/regressions/<target>/ once fixed, and
# the stable test `cargo test -p mjpegd-fuzzing` replays it forever.
#   bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request multipart jpeg digest)
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=5 2>&1 \
        | grep -E "^#[0-9]+.*DONE|^Done|ERROR|panicked|SUMMARY|stat::" || true
    test ! -d "artifacts/$t" || ! ls "artifacts/$t" | grep -q . || { echo "$t: crash in artifacts/$t"; exit 1; }
    cargo +nightly fuzz cmin "$t" "corpus/$t" 2>&1 | tail -1
done
