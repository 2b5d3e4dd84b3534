#!/usr/bin/env bash
# Many small items against restic 0.14 (and borg, when installed): 100,000 items of 20–40 bytes in
# 100 folders, backed up, listed and restored, same run, same machine.
#
#   bash benches/small-items.sh [ITEMS] [RUNS]      (defaults: 100000 3)
#
# Reports medians of RUNS runs of time and peak RSS, and exarch's ratios to restic.
set -euo pipefail
items=${1:-100000}; runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/benches/lib.sh"
base=$(mktemp -d /tmp/exarch-small.XXXXXX)
trap 'bench_fs_done "$base"' EXIT
work=$(bench_fs "$base" 6)
export EXARCH_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench EXARCH_CACHE_DIR="$work/exarch-cache" RESTIC_CACHE_DIR="$work/restic-cache"
export BORG_BASE_DIR="$work/borg-base"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
cargo run --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example gen_small -- "$work/corpus" "$items" 100
exarch="$root/target/release/exarch"
have_borg=$(command -v borg >/dev/null && echo 1 || echo 0)
fs_note "$work"
echo "corpus: $(find "$work/corpus" -type f | wc -l) files, $(du -sh --apparent-size "$work/corpus" | cut -f1); $(restic version | head -1); $([ "$have_borg" = 1 ] && borg --version); $(nproc) cores"

for i in $(seq "$runs"); do
  rm -rf "$work/x" "$work/r" "$work/b" "$work/out" "$work/exarch-cache" "$work/restic-cache" "$work/borg-base"
  "$exarch" init --repo "$work/x" -q >/dev/null
  restic init -r "$work/r" -q >/dev/null
  warm "$work/corpus"
  measure x-pack "$exarch" pack --repo "$work/x" --from-dir "$work/corpus" --mailbox small@example.com -q
  warm "$work/corpus"
  measure r-backup restic -r "$work/r" backup "$work/corpus" -q
  measure x-ls "$exarch" ls --repo "$work/x" latest -q
  measure r-ls restic -r "$work/r" ls latest
  cold
  measure x-extract "$exarch" extract --repo "$work/x" latest --to "$work/out/x" -q
  rm -rf "$work/out"
  cold
  measure r-restore restic -r "$work/r" restore latest --target "$work/out/r" -q
  rm -rf "$work/out"
  if [ "$have_borg" = 1 ]; then
    borg init -e repokey "$work/b" >/dev/null 2>&1
    warm "$work/corpus"
    measure b-create borg create "$work/b::one" "$work/corpus"
    cold
    mkdir -p "$work/out/b"
    (cd "$work/out/b" && measure b-extract borg extract "$work/b::one")
  fi
  rm -rf "$work/out"
  # Let the file system finish freeing what was deleted before the next run's first measurement.
  sync; sleep 5
done
row() { # label exarch-file other-file other-name
  local xt xm rt rm; xt=$(col 1 "$2"); xm=$(col 2 "$2"); rt=$(col 1 "$3"); rm=$(col 2 "$3")
  printf '%-10s exarch %7.2f s %7d KiB   %s %7.2f s %7d KiB   %5.2fx faster, memory %.2f\n' \
    "$1" "$xt" "$xm" "$4" "$rt" "$rm" "$(echo "$rt / $xt" | bc -l)" "$(echo "$xm / $rm" | bc -l)"
}
row backup x-pack r-backup restic
row "ls all" x-ls r-ls restic
row restore x-extract r-restore restic
if [ "$have_borg" = 1 ]; then
  row backup x-pack b-create borg
  row restore x-extract b-extract borg
fi
