#!/usr/bin/env bash
# A snapshot of 1,000,000 items: how soon `exarch ls` shows the first item, how long it takes to
# list all of them, and with how much memory — for a paged manifest (version 2, what exarch writes)
# and, to compare, the same items in one version 1 manifest.
#
#   bash benches/manifest-1m.sh [ITEMS] [RUNS]      (defaults: 1000000 5)
#
# The repository gets a cheap key slot (8 MiB Argon2id), so the figures are the manifest's cost
# "once the key is derived" plus process start; the default slot adds about 0.08 s to every
# command. Times are medians of RUNS; "first item" is the wall time of `exarch ls ID | head -1`.
set -euo pipefail
items=${1:-1000000}; runs=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/exarch-manifest.XXXXXX)
trap 'rm -rf "$work"' EXIT
. "$root/benches/lib.sh"
export EXARCH_PASSWORD=bench EXARCH_CACHE_DIR="$work/cache"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example gen_manifest
exarch="$root/target/release/exarch"
gen="$root/target/release/examples/gen_manifest"
"$exarch" init --repo "$work/x" --kdf-memory 8 -q >/dev/null
measure gen-v2 "$gen" "$work/x" "$work/cache" "$items" 1000
paged=$(ls -t "$work/x/snapshots" | head -1)
measure gen-v1 "$gen" "$work/x" "$work/cache" "$items" 1000 0
single=$(ls -t "$work/x/snapshots" | head -1)
echo "snapshot of $items items: paged $(stat -c %s "$work/x/snapshots/$paged") bytes, one manifest $(stat -c %s "$work/x/snapshots/$single") bytes; $(nproc) cores"
first() { # id -> milliseconds until the first line of `ls`
  local t0 t1; t0=$(date +%s%N); "$exarch" ls --repo "$work/x" "$1" | head -1 >/dev/null; t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
for i in $(seq "$runs"); do
  first "$paged" >>"$work/first-v2"; first "$single" >>"$work/first-v1"
  measure ls-v2 "$exarch" ls --repo "$work/x" "$paged"
  measure ls-v1 "$exarch" ls --repo "$work/x" "$single"
  measure snapshots "$exarch" snapshots --repo "$work/x"
done
printf '%-24s %10s %12s %14s\n' "" "first item" "ls all" "ls peak RSS"
printf '%-24s %7s ms %10.2f s %10d KiB\n' "paged (version 2)" "$(median <"$work/first-v2")" "$(col 1 ls-v2)" "$(col 2 ls-v2)"
printf '%-24s %7s ms %10.2f s %10d KiB\n' "one manifest (v1)" "$(median <"$work/first-v1")" "$(col 1 ls-v1)" "$(col 2 ls-v1)"
printf 'open + list snapshots alone: %.2f s; writing the snapshot: paged %.1f s / %d KiB, one manifest %.1f s / %d KiB\n' \
  "$(col 1 snapshots)" "$(col 1 gen-v2)" "$(col 2 gen-v2)" "$(col 1 gen-v1)" "$(col 2 gen-v1)"
