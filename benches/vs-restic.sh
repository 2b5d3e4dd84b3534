#!/usr/bin/env bash
# exarch vs restic on the same mailbox-like corpus, same machine, same run.
#
#   bash benches/vs-restic.sh [MAILBOXES] [ITEMS] [RUNS]      (defaults: 4 1000 3)
#
# Needs restic (Debian: apt-get install restic; bookworm ships 0.14) and GNU time (apt-get install time).
# Reports the median of RUNS runs of: backup time, peak RSS, repository size, restore time; and ratios.
# As root, everything happens on a fresh journaled ext4 file system (lib.sh: bench_fs); backups
# start with the corpus in the page cache, restores with an empty one (lib.sh: warm, cold).
set -euo pipefail
mailboxes=${1:-4}; items=${2:-1000}; runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/benches/lib.sh"
base=$(mktemp -d /tmp/exarch-vs-restic.XXXXXX)
trap 'bench_fs_done "$base"' EXIT
work=$(bench_fs "$base" 6)
export EXARCH_PASSWORD=bench RESTIC_PASSWORD=bench EXARCH_CACHE_DIR="$work/exarch-cache" RESTIC_CACHE_DIR="$work/restic-cache"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
cargo run --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example gen_corpus -- "$work/corpus" "$mailboxes" "$items"
exarch="$root/target/release/exarch"
fs_note "$work"
echo "corpus: $(find "$work/corpus" -type f | wc -l) files, $(du -sh "$work/corpus" | cut -f1); $(restic version | head -1); $(nproc) cores"

for i in $(seq "$runs"); do
  rm -rf "$work/x" "$work/r" "$work/xo" "$work/ro" "$work/exarch-cache" "$work/restic-cache"
  "$exarch" init --repo "$work/x" -q >/dev/null
  restic init -r "$work/r" -q >/dev/null
  warm "$work/corpus"
  measure exarch-pack "$exarch" pack --repo "$work/x" --from-dir "$work/corpus" --mailbox all -q
  warm "$work/corpus"
  measure restic-backup restic -r "$work/r" backup "$work/corpus" -q
  cold
  measure exarch-extract "$exarch" extract --repo "$work/x" latest --to "$work/xo" -q
  cold
  measure restic-restore restic -r "$work/r" restore latest --target "$work/ro" -q
  du -sb "$work/x" | cut -f1 >>"$work/exarch-size"; du -sb "$work/r" | cut -f1 >>"$work/restic-size"
  rm -rf "$work/xo" "$work/ro"
  # Let the file system finish freeing what was deleted before the next run's first measurement.
  sync; sleep 5
done
for l in exarch-pack restic-backup exarch-extract restic-restore; do
  printf '%-16s median %6.2f s   peak RSS %6d KiB\n' "$l" "$(cut -d' ' -f1 "$work/$l" | median)" "$(cut -d' ' -f2 "$work/$l" | median)"
done
printf 'repository size  exarch %d MiB, restic %d MiB\n' $(( $(median <"$work/exarch-size") / 1048576 )) $(( $(median <"$work/restic-size") / 1048576 ))
awk -v a="$(cut -d' ' -f1 "$work/restic-backup" | median)" -v b="$(cut -d' ' -f1 "$work/exarch-pack" | median)" \
    -v c="$(cut -d' ' -f1 "$work/restic-restore" | median)" -v d="$(cut -d' ' -f1 "$work/exarch-extract" | median)" \
    -v e="$(cut -d' ' -f2 "$work/exarch-pack" | median)" -v f="$(cut -d' ' -f2 "$work/restic-backup" | median)" \
    'BEGIN { printf "ratios: pack %.2fx faster, extract %.2fx faster, pack peak memory %.2f of restic\n", a/b, c/d, e/f }'
