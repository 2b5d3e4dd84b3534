#!/usr/bin/env bash
# Prune time and peak memory on a repository of about a million chunks.
#
#   bash benches/prune-1m.sh [MIB]       (default 256 MiB of data ≈ 1M chunks of 256 B)
#
# Builds the repository with `examples/big_repo.rs`, then times `exarch prune --keep-last 1
# --delete-now` (a third of the chunks are dead) and `exarch verify` with GNU time.
set -euo pipefail
mib=${1:-256}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/exarch-prune-1m.XXXXXX)
trap 'rm -rf "$work"' EXIT
export EXARCH_PASSWORD=bench EXARCH_CACHE_DIR="$work/cache"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
chunks=$(cargo run --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example big_repo -- "$work/repo" "$mib")
exarch="$root/target/release/exarch"
echo "repository: $chunks chunks, $(du -sh "$work/repo" | cut -f1)"
"$exarch" snapshots --repo "$work/repo" -q >/dev/null   # builds the local index cache once
sync
/usr/bin/time -f "prune:  %e s, peak RSS %M KiB" "$exarch" prune --repo "$work/repo" --keep-last 1 --delete-now -q
echo "after prune: $(du -sh "$work/repo" | cut -f1)"
sync
/usr/bin/time -f "verify: %e s, peak RSS %M KiB" "$exarch" verify --repo "$work/repo" -q >/dev/null
