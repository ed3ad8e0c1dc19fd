#!/usr/bin/env bash
# Runs the hostile-peer fuzz target for a while, from the seed corpus:
#
#     bash fuzz/smoke.sh [SECONDS]        (default 60)
#
# Installs what it needs (a minimal nightly toolchain with rustup, and
# cargo-fuzz from crates.io) if they are missing. Exits non-zero if the
# target crashes, hangs or fails to build; the input that did it is in
# fuzz/artifacts/hostile_peer/ (replay it with
# `HOSTILE_REPLAY=<file> FDRING_HOSTILE_TRACE=1 cargo test --test hostile_fuzz replay -- --nocapture`).
# If no nightly toolchain or cargo-fuzz can be had, it prints a loud
# `SKIPPED: <reason>` line and exits 0.
#
# New inputs the fuzzer finds go to a temporary directory: the committed
# seed corpus (fuzz/corpus/hostile_peer/) is only read.
#
# FUZZ_SANITIZER=none (default: address) runs about 1.5 times as many
# inputs per second; FDRING_HOSTILE_KNOWN=none tolerates what older fdring
# versions got wrong (see `Options` in tests/support/hostile/mod.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
# .ci/run passes its pinned nightly; by hand, the current one.
toolchain="${FDRING_NIGHTLY:-nightly}"
target=hostile_peer

skip() {
    echo
    echo "######################################################################"
    echo "SKIPPED: $*"
    echo "######################################################################"
    exit 0
}

case "$seconds" in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2 && exit 2 ;;
esac

command -v rustup >/dev/null 2>&1 || skip "rustup is not installed, so no nightly toolchain for cargo-fuzz"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "installing a minimal nightly toolchain for cargo-fuzz"
    rustup toolchain install "$toolchain" --profile minimal ||
        skip "the nightly toolchain cannot be installed (rustup toolchain install $toolchain failed)"
    rustup run "$toolchain" rustc --version >/dev/null 2>&1 ||
        skip "the nightly toolchain was installed but does not run"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked ||
        skip "cargo-fuzz cannot be installed (cargo install cargo-fuzz --locked failed)"
fi
rustup run "$toolchain" rustc --version
cargo fuzz --version

work="$(mktemp -d "${TMPDIR:-/tmp}/fdring-fuzz-corpus.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "fuzzing $target for ${seconds}s (sanitizer: $sanitizer)"
status=0
cargo +"$toolchain" fuzz run --sanitizer "$sanitizer" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 ||
    status=$?
if [ "$status" -ne 0 ]; then
    echo
    echo "FUZZING FAILED (exit $status): the input is in fuzz/artifacts/$target/" >&2
    ls -l "fuzz/artifacts/$target/" >&2 || true
    exit "$status"
fi
echo "fuzzing $target: no crash in ${seconds}s"
