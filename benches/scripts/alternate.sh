#!/bin/bash
# Two builds of ordo compared on the same machine in the same session: each round starts a
# fresh network (`ordo up`) with one build, runs one `ordo load`, stops it, then does the
# same with the other build, so that both see the same noise. Prints one line per run:
# build, round, committed/s, p50 ms, p99 ms, committed, rejected, timed out, errors,
# cross-check matched. docs/performance.md lists the figures it gave.
#
# usage: alternate.sh BASE_ORDO NEW_ORDO ROUNDS
#   env: SCENARIO (transfer), CLIENTS (64), DURATION (20s), VIA (grpc), WORK (/tmp),
#        BASE_UP / NEW_UP: extra `ordo up` arguments of each side (one build with and
#        without TLS: `alternate.sh ORDO ORDO 3` with BASE_UP=--insecure)
set -euo pipefail
base=$1; new=$2; rounds=$3
work=${WORK:-/tmp}
for r in $(seq "$rounds"); do
  for side in base new; do
    if [ "$side" = base ]; then bin=$base; extra=${BASE_UP:-}; else bin=$new; extra=${NEW_UP:-}; fi
    name=$(basename "$bin")-$side${extra//[^a-z]/}
    dir=$work/alternate-$name
    rm -rf "$dir"
    # shellcheck disable=SC2086 # the extra arguments are words
    "$bin" up --data-dir "$dir" $extra > "$dir.up.log" 2>&1 &
    up=$!
    for _ in $(seq 90); do
      python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['gateways']" "$dir/network.json" 2>/dev/null && break
      sleep 2
    done
    "$bin" load --network "$dir/network.json" --scenario "${SCENARIO:-transfer}" \
      --clients "${CLIENTS:-64}" --duration "${DURATION:-20s}" --via "${VIA:-grpc}" --json \
      > "$dir.r$r.json" 2> "$dir.r$r.err"
    python3 - "$name" "$r" "$dir.r$r.json" <<'PY'
import json, sys
name, r, path = sys.argv[1:4]
j = json.load(open(path))
print(name, f"r{r}", j["committed_per_sec"], j["p50_ms"], j["p99_ms"], j["committed"],
      j["rejected"], j["timed_out"], j["errors"], j["cross_check"]["matches"])
PY
    kill -INT "$up"
    wait "$up" || true
    sleep 2
  done
done
