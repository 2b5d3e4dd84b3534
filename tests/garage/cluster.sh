#!/usr/bin/env bash
# A three-node Garage cluster on 127.0.0.1 for the object-storage tests (replication factor 3,
# sqlite metadata). Usage:
#   cluster.sh start DIR BASEPORT   nodes' RPC on BASEPORT+0..2, S3 on +10..12, admin on +20..22;
#                                   writes DIR/env (AWS_* variables and EXARCH_TEST_S3_ENDPOINTS)
#   cluster.sh stop DIR             stops every node started in DIR
#   cluster.sh kill DIR N           kills node N (1..3) at once
set -euo pipefail
cmd=${1:?start|stop|kill}
dir=${2:?directory}
garage=${GARAGE:-garage}

case "$cmd" in
stop)
  for p in "$dir"/n*/pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  exit 0 ;;
kill)
  n=${3:?node}
  kill -9 "$(cat "$dir/n$n/pid")"
  exit 0 ;;
start) ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

base=${3:?base port}
mkdir -p "$dir"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in 1 2 3; do
  d="$dir/n$n"
  mkdir -p "$d/meta" "$d/data"
  cat > "$d/garage.toml" <<CONF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$((base + n - 1))"
rpc_public_addr = "127.0.0.1:$((base + n - 1))"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$((base + 10 + n - 1))"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$((base + 20 + n - 1))"
admin_token = "$token"
CONF
  RUST_LOG=warn "$garage" -c "$d/garage.toml" server > "$d/log" 2>&1 &
  echo $! > "$d/pid"
done

g() { "$garage" -c "$dir/n1/garage.toml" "$@"; }
# Wait until every node answers.
ids=()
for n in 1 2 3; do
  for _ in $(seq 1 200); do
    if "$garage" -c "$dir/n$n/garage.toml" status > /dev/null 2>&1 &&
      id=$("$garage" -c "$dir/n$n/garage.toml" node id -q 2>/dev/null); then break; fi
    sleep 0.1
  done
  [ -n "${id:-}" ] || { echo "garage node $n did not start; see $dir/n$n/log" >&2; exit 1; }
  ids+=("$id")
  id=
done
for n in 2 3; do g node connect "${ids[$((n - 1))]}" > /dev/null; done
for id in "${ids[@]}"; do g layout assign -z dc1 -c 1G "${id%%@*}" > /dev/null; done
g layout apply --version 1 > /dev/null
# The layout takes a moment to reach every node.
for _ in $(seq 1 100); do
  if g bucket create exarch-test > /dev/null 2>&1; then break; fi
  sleep 0.2
done
keys=$(g key create exarch-test)
g bucket allow --read --write --owner exarch-test --key exarch-test > /dev/null
key_id=$(printf '%s\n' "$keys" | sed -n 's/^Key ID:[[:space:]]*//p' | head -1)
key_secret=$(printf '%s\n' "$keys" | sed -n 's/^Secret key:[[:space:]]*//p' | head -1)
[ -n "$key_id" ] && [ -n "$key_secret" ] || { echo "cannot read the key from: $keys" >&2; exit 1; }
cat > "$dir/env" <<ENV
AWS_ACCESS_KEY_ID=$key_id
AWS_SECRET_ACCESS_KEY=$key_secret
AWS_REGION=garage
EXARCH_TEST_S3_ENDPOINTS=http://127.0.0.1:$((base + 10)) http://127.0.0.1:$((base + 11)) http://127.0.0.1:$((base + 12))
EXARCH_TEST_S3_BUCKET=exarch-test
ENV
echo "garage cluster up in $dir"
