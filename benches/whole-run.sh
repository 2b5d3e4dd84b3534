#!/usr/bin/env bash
# Whole runs against restic 0.14: several mailboxes backed up and restored, as one command and one
# command per mailbox, on the same corpus in the same run.
#
#   bash benches/whole-run.sh [MAILBOXES] [ITEMS] [RUNS]      (defaults: 8 1500 3)
#
# Needs restic (Debian bookworm's package is 0.14) and GNU time. Corpus: benches/corpus.rs, one
# directory per mailbox (user1@example.com, ...), attachments shared across mailboxes. Reports
# medians of RUNS runs: time and peak RSS of each step, and exarch's ratios to restic. The
# "pipeline" rows use a repository whose key slot is cheap (--kdf-memory 8 MiB, one pass), so
# that Argon2id's 64 MiB does not set the peak. Backups start with the corpus in the page cache,
# restores with an empty page cache (lib.sh: warm, cold); run as root, everything happens on a
# fresh journaled ext4 file system (lib.sh: bench_fs).
set -euo pipefail
mailboxes=${1:-8}; items=${2:-1500}; runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/benches/lib.sh"
base=$(mktemp -d /tmp/exarch-whole-run.XXXXXX)
trap 'bench_fs_done "$base"' EXIT
work=$(bench_fs "$base" 14)
export EXARCH_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench EXARCH_CACHE_DIR="$work/exarch-cache" RESTIC_CACHE_DIR="$work/restic-cache"
export BORG_BASE_DIR="$work/borg-base"
have_borg=$(command -v borg >/dev/null && echo 1 || echo 0)
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
cargo run --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example gen_corpus -- "$work/corpus" "$mailboxes" "$items"
exarch="$root/target/release/exarch"
fs_note "$work"
echo "corpus: $mailboxes mailboxes, $(find "$work/corpus" -type f | wc -l) files, $(du -sh "$work/corpus" | cut -f1); $(restic version | head -1); $(nproc) cores"
boxes=$(cd "$work/corpus" && ls)

for i in $(seq "$runs"); do
  rm -rf "$work/x" "$work/xp" "$work/xq" "$work/r" "$work/rp" "$work/out" "$work/exarch-cache" "$work/restic-cache"
  "$exarch" init --repo "$work/x" -q >/dev/null
  "$exarch" init --repo "$work/xp" --kdf-memory 8 --kdf-passes 1 -q >/dev/null
  "$exarch" init --repo "$work/xq" --kdf-memory 8 --kdf-passes 1 -q >/dev/null
  restic init -r "$work/r" -q >/dev/null
  restic init -r "$work/rp" -q >/dev/null
  # one command for every mailbox
  warm "$work/corpus"
  measure x-pack-all "$exarch" pack --repo "$work/x" --from-dir "$work/corpus" --all-mailboxes -q
  warm "$work/corpus"
  measure xp-pack-all "$exarch" pack --repo "$work/xp" --from-dir "$work/corpus" --all-mailboxes -q
  warm "$work/corpus"
  measure r-backup-all restic -r "$work/r" backup "$work/corpus" -q
  cold
  measure x-extract-all "$exarch" extract --repo "$work/x" latest --all-mailboxes --to "$work/out/x" -q
  rm -rf "$work/out"
  cold
  measure r-restore-all restic -r "$work/r" restore latest --target "$work/out/r" -q
  rm -rf "$work/out"
  # one command per mailbox (times added up, peak is the largest)
  for b in $boxes; do
    warm "$work/corpus/$b"
    measure x-pack-one "$exarch" pack --repo "$work/xq" --from-dir "$work/corpus/$b" --mailbox "$b" -q
    warm "$work/corpus/$b"
    measure r-backup-one restic -r "$work/rp" backup "$work/corpus/$b" -q
    cold
    measure x-extract-one "$exarch" extract --repo "$work/x" latest --mailbox "$b" --to "$work/out/x1/$b" -q
    rm -rf "$work/out"
    cold
    measure r-restore-one restic -r "$work/r" restore latest --include "$work/corpus/$b" --target "$work/out/r1" -q
    rm -rf "$work/out"
  done
  for l in x-pack-one r-backup-one x-extract-one r-restore-one; do
    awk '{t+=$1; if ($2>m) m=$2} END {print t, m}' "$work/$l" >>"$work/$l-sum"; rm "$work/$l"
  done
  du -sb "$work/x" | cut -f1 >>"$work/x-size"; du -sb "$work/r" | cut -f1 >>"$work/r-size"
  if [ "$have_borg" = 1 ]; then
    rm -rf "$work/b" "$work/borg-base"
    borg init -e repokey "$work/b" >/dev/null 2>&1
    warm "$work/corpus"
    measure b-create-all borg create "$work/b::one" "$work/corpus"
    mkdir -p "$work/out/b"
    cold
    (cd "$work/out/b" && measure b-extract-all borg extract "$work/b::one")
  fi
  rm -rf "$work/out" "$work/b"
  # Let the file system finish freeing what was deleted before the next run's first measurement.
  sync; sleep 5
done
row() { # label exarch-file other-file [other-name]
  local xt xm rt rm; xt=$(col 1 "$2"); xm=$(col 2 "$2"); rt=$(col 1 "$3"); rm=$(col 2 "$3")
  printf '%-34s exarch %7.2f s %7d KiB   %-6s %7.2f s %7d KiB   %5.2fx faster, memory %.2f\n' \
    "$1" "$xt" "$xm" "${4:-restic}" "$rt" "$rm" "$(echo "$rt / $xt" | bc -l)" "$(echo "$xm / $rm" | bc -l)"
}
row "backup, one command" x-pack-all r-backup-all
row "backup, one command (pipeline)" xp-pack-all r-backup-all
row "backup, per mailbox (pipeline)" x-pack-one-sum r-backup-one-sum
row "restore, one command" x-extract-all r-restore-all
row "restore, per mailbox" x-extract-one-sum r-restore-one-sum
if [ "$have_borg" = 1 ]; then
  row "backup, one command" x-pack-all b-create-all borg
  row "restore, one command" x-extract-all b-extract-all borg
fi
printf 'repository size: exarch %d MiB, restic %d MiB\n' $(( $(median <"$work/x-size") / 1048576 )) $(( $(median <"$work/r-size") / 1048576 ))
