#!/usr/bin/env bash
# Does what README.md tells a stranger, literally, in a fresh empty directory:
#   cargo run --release -- serve          (the port is the only change: a free one)
#   cpn task submit --wait -- sh -c 'echo hi; exit 3'      (the CLI as the tour runs it;
#                                      it lands on an emulated node of a demo site)
# and then `cpn agent` from another fresh directory, with its default state dir, running a
# task pinned to its site and label. Any difference from what the README promises fails the
# script.
#
# Usage: scripts/readme-start.sh        (CI runs it; it needs nothing but cargo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cpn-readme.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "readme-start: FAILED: $*" >&2
    for log in "$work"/*.log "$work"/*/*.log; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
    exit 1
}

# The tour's `alias cpn='cargo run --release -q --'`, from wherever we stand.
cpn() { cargo run --release -q --manifest-path "$repo/Cargo.toml" -- "$@"; }

port=18080
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

echo "== README start: release build"
cargo build --release -q --manifest-path "$repo/Cargo.toml" --bin cpn

echo "== README start: cargo run --release -- serve, in the empty directory $work (port $port)"
cd "$work"
cargo run --release -q --manifest-path "$repo/Cargo.toml" -- serve --listen "127.0.0.1:$port" \
    >serve.log 2>&1 &
pids+=($!)
# `cargo run` checks the build first: allow for it.
for _ in $(seq 1 3000); do
    [ -s cpn-data/cpn.addr ] && break
    kill -0 "${pids[0]}" 2>/dev/null || fail "cpn serve exited"
    sleep 0.1
done
[ -s cpn-data/cpn.addr ] || fail "cpn serve did not start within 300 s"
export CPN_SERVER="http://127.0.0.1:$port"

echo "== README tour: cpn site list"
sites=$(cpn site list) || fail "cpn site list"
echo "$sites" | grep -q zhongwei || fail "the demo sites are missing: $sites"

run_hi_task() { # [--site SITE]
    local out code id logs
    set +e
    out=$(cpn task submit --wait "$@" -- sh -c 'echo hi; exit 3' 2>task.err)
    code=$?
    set -e
    [ "$code" = 3 ] || fail "cpn task submit --wait $* exited $code, not 3 like the task: $out $(cat task.err)"
    grep -q '(exit 3)' task.err || fail "no '(exit 3)' in: $(cat task.err)"
    id=$(echo "$out" | head -n 1)
    logs=$(cpn task logs "$id") || fail "cpn task logs $id"
    [ "$logs" = hi ] || fail "task $id printed '$logs', not 'hi'"
    where=$(cpn task get "$id" | sed -n 's/^Site\/node: *//p')
    echo "task $id: exit 3, output 'hi', ran on $where"
}

echo "== README tour: cpn task submit --wait -- sh -c 'echo hi; exit 3'"
run_hi_task
case "$where" in
    local/* | "") fail "the tour's task ran on '$where', not on an emulated node of a demo site" ;;
esac
cpn node list | grep -q 'agent (emulated)' || fail "no emulated node in: $(cpn node list)"

echo "== README: cpn agent --join from another fresh directory, into site zhongwei"
mkdir "$work/gpu-07"
JOIN=$(cpn site join-token create zhongwei) || fail "cpn site join-token create zhongwei"
(cd "$work/gpu-07" && exec cargo run --release -q --manifest-path "$repo/Cargo.toml" -- \
    agent --join "$JOIN" --name gpu-07 --label pool=a) \
    >"$work/gpu-07/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    cpn node list 2>/dev/null | grep -q 'gpu-07' && break
    sleep 0.1
done
cpn node list | grep -q 'gpu-07' || fail "the agent's node never showed up"
run_hi_task --site zhongwei --node-selector pool=a
[ "$where" = zhongwei/gpu-07 ] || fail "the task pinned to pool=a ran on '$where', not zhongwei/gpu-07"
[ -d "$work/gpu-07/cpn-agent-state" ] || fail "the agent did not keep its state in ./cpn-agent-state"

echo "readme-start: 2 passed, 0 failed"
