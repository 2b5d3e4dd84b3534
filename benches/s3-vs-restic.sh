#!/usr/bin/env bash
# exarch vs restic backing up to the same three-node Garage cluster on 127.0.0.1 (S3), same corpus,
# same run; then `snapshots` over many snapshots, counting exarch's requests.
#
#   bash benches/s3-vs-restic.sh [MAILBOXES] [ITEMS] [RUNS] [SNAPSHOTS]   (defaults: 4 1000 3 1000)
#
# Needs garage (cargo install garage --locked), restic (apt-get install restic: 0.14 on bookworm)
# and GNU time. Reports medians of backup time and peak RSS, restore time, and the ratios.
set -euo pipefail
mailboxes=${1:-4}; items=${2:-1000}; runs=${3:-3}; snaps=${4:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/exarch-s3-vs-restic.XXXXXX)
trap 'bash "$root/tests/garage/cluster.sh" stop "$work/garage"; rm -rf "$work"' EXIT
bash "$root/tests/garage/cluster.sh" start "$work/garage" "${GARAGE_BASEPORT:-33100}" >/dev/null
set -a; . <(grep '^AWS_' "$work/garage/env"); set +a
endpoint=$(sed -n 's/^EXARCH_TEST_S3_ENDPOINTS=\([^ ]*\).*/\1/p' "$work/garage/env")
export EXARCH_PASSWORD=bench RESTIC_PASSWORD=bench EXARCH_CACHE_DIR="$work/exarch-cache" RESTIC_CACHE_DIR="$work/restic-cache"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p exarch
cargo run --release -q --manifest-path "$root/Cargo.toml" -p exarch-archive --example gen_corpus -- "$work/corpus" "$mailboxes" "$items"
exarch="$root/target/release/exarch"
echo "corpus: $(find "$work/corpus" -type f | wc -l) files, $(du -sh "$work/corpus" | cut -f1); $(restic version | head -1); $(garage --version 2>/dev/null | head -1); $(nproc) cores"
cat "$work"/corpus/*/*/* "$work"/corpus/*/*/*/* >/dev/null 2>&1 || true

. "$root/benches/lib.sh"

for i in $(seq "$runs"); do
  rm -rf "$work/xo" "$work/ro" "$work/exarch-cache" "$work/restic-cache"
  x="s3:$endpoint/exarch-test/exarch-$i"; r="s3:$endpoint/exarch-test/restic-$i"
  "$exarch" init --repo "$x" -q >/dev/null
  restic init -r "$r" -q >/dev/null
  measure exarch-pack "$exarch" pack --repo "$x" --from-dir "$work/corpus" --mailbox all -q
  measure restic-backup restic -r "$r" backup "$work/corpus" -q
  measure exarch-extract "$exarch" extract --repo "$x" latest --to "$work/xo" -q
  measure restic-restore restic -r "$r" restore latest --target "$work/ro" -q
done
for l in exarch-pack restic-backup exarch-extract restic-restore; do
  printf '%-16s median %6.2f s   peak RSS %6d KiB\n' "$l" "$(cut -d' ' -f1 "$work/$l" | median)" "$(cut -d' ' -f2 "$work/$l" | median)"
done
awk -v a="$(cut -d' ' -f1 "$work/restic-backup" | median)" -v b="$(cut -d' ' -f1 "$work/exarch-pack" | median)" \
    -v c="$(cut -d' ' -f1 "$work/restic-restore" | median)" -v d="$(cut -d' ' -f1 "$work/exarch-extract" | median)" \
    -v e="$(cut -d' ' -f2 "$work/exarch-pack" | median)" -v f="$(cut -d' ' -f2 "$work/restic-backup" | median)" \
    'BEGIN { printf "ratios (Garage): pack %.2fx faster, extract %.2fx faster, pack peak memory %.2f of restic\n", a/b, c/d, e/f }'

# `snapshots` over many snapshots: requests of the first listing (cold cache) and of the next.
x="s3:$endpoint/exarch-test/many"
"$exarch" init --repo "$x" -q >/dev/null
mkdir -p "$work/tiny"
for i in $(seq "$snaps"); do
  echo "item $i" > "$work/tiny/item.eml"
  "$exarch" pack --repo "$x" --from-dir "$work/tiny" --mailbox m -q --time "$(date -u -d "@$((1700000000 + i * 3600))" +%Y-%m-%dT%H:%M:%SZ)"
done
requests() { python3 -c 'import json,sys
e=[json.loads(l) for l in open(sys.argv[1]) if "object store requests" in l][-1]
print(", ".join(f"{k} {e[k]}" for k in ("get","list","put","stat","delete")))' "$1"; }
rm -rf "$EXARCH_CACHE_DIR"
/usr/bin/time -f "%e" -o "$work/t1" "$exarch" --repo "$x" snapshots --json --log-file "$work/s1.log" --log-format json >/dev/null
/usr/bin/time -f "%e" -o "$work/t2" "$exarch" --repo "$x" snapshots --json --log-file "$work/s2.log" --log-format json >/dev/null
echo "snapshots of $snaps: cold cache $(cat "$work/t1") s ($(requests "$work/s1.log")); cached $(cat "$work/t2") s ($(requests "$work/s2.log"))"
