#!/usr/bin/env bash
# The API contract under a fuzzer (issue #12): schemathesis, from PyPI into a virtual
# environment, against a started `cpn serve` with the demo federation and its local agent,
# over every endpoint of /api/v1/openapi.json, once as the operator and once as a plain
# user. Any 5xx, undeclared status code, wrong content type, or response (or SSE event)
# that does not match its declared schema fails the run. Whatever a request would execute
# (task argv, scripts) is replaced by `true` (scripts/fuzz/hooks.py).
#
# Usage: scripts/api-fuzz.sh [SECONDS_PER_ROLE]   (default 90; CI runs the default)
#        CPN_FUZZ_SEED=N for another seed than 1 (CI keeps 1, so a run can be replayed)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-90}
venv=${CPN_FUZZ_VENV:-$repo/target/schemathesis-venv}
schemathesis_version=4.32.5

# CPython before 3.11.8 / 3.12.2 miscounts AST recursion (gh-106905), which Hypothesis
# trips over at random inside schemathesis: take a newer interpreter when there is one.
python=python3
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.[2-9]*/bin/python3 /usr/bin/python3.1[3-9]; do
    [ -x "$candidate" ] && { python=$candidate; break; }
done
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version | grep -q "$schemathesis_version"; then
    echo "== fuzz: installing schemathesis $schemathesis_version into $venv ($("$python" --version))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi

cargo build -q --manifest-path "$repo/Cargo.toml" --bin cpn
cpn="$repo/target/debug/cpn"
work=$(mktemp -d /tmp/cpn-fuzz.XXXXXX)
logs="$repo/target/api-fuzz"   # schemathesis' and the server's logs stay here
mkdir -p "$logs"
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=18480
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
base="http://127.0.0.1:$port"
"$cpn" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$logs/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    [ -s "$work/data/cpn.addr" ] && break
    sleep 0.1
done
[ -s "$work/data/cpn.addr" ] || { cat "$logs/serve.log"; echo "fuzz: cpn serve did not start"; exit 1; }
admin_token=$(cat "$work/data/admin.token")
export CPN_SERVER=$base

status=0
run_as() { # ROLE TOKEN (in the scratch dir: schemathesis keeps a .schemathesis/ folder in the current one)
    cd "$work"
    echo "== fuzz: every endpoint as $1 (${seconds} s)"
    # Logging out, rotating the operator token, or revoking or resetting the operator's own
    # sessions and password would revoke the very token the run uses (e2e/accounts.rs tests
    # those endpoints).
    SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$repo/scripts/fuzz" "$venv/bin/st" run \
        "$base/api/v1/openapi.json" \
        --header "Authorization: Bearer $2" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --exclude-path /api/v1/auth/logout --exclude-path /api/v1/auth/rotate-admin-token \
        --exclude-path-regex '^/api/v1/users/\{name\}/(revoke-sessions|reset-password)$' \
        --phases examples,coverage,fuzzing \
        --max-time "$seconds" --workers 2 --seed "${CPN_FUZZ_SEED:-1}" \
        --request-timeout 30 --no-color >"$logs/st-$1.log" 2>&1 || {
        status=1
        echo "fuzz: FAILED as $1 (whole log: $logs/st-$1.log):"
        sed -n '/= \(ERRORS\|FAILURES\) =/,$p' "$logs/st-$1.log" | cut -c1-400 | head -n 400
    }
    # A run that revoked its own token would have tested nothing but 401s from then on.
    if ! curl -sf -o /dev/null -H "Authorization: Bearer $2" "$base/api/v1/auth/whoami"; then
        status=1
        echo "fuzz: the $1 run revoked its own token: exclude the endpoint that did it"
    fi
    sed -n '/= SUMMARY =/,$p' "$logs/st-$1.log"
}
run_as operator "$admin_token"

# A plain user of its own tenant, made after the operator's run so nothing that run did
# (it disables, resets and deletes users at random) touches it.
user_password='fuzzing-Tenant-9f3k-password'
CPN_TOKEN=$admin_token "$cpn" tenant create fuzz >/dev/null
CPN_TOKEN=$admin_token "$cpn" user create --username fuzzer --password "$user_password" \
    --tenant fuzz --role user >/dev/null
user_token=$("$cpn" login --username fuzzer --password "$user_password" 2>/dev/null \
    | sed -n 's/^ *export CPN_TOKEN=//p')
[ -n "$user_token" ] || { echo "fuzz: could not log the plain user in"; exit 1; }
run_as user "$user_token"

if ! curl -sf "$base/healthz" >/dev/null; then
    echo "fuzz: the server stopped answering"; status=1
fi
if grep -q "panicked" "$logs/serve.log"; then
    echo "fuzz: the server panicked:"; grep -B2 -A8 panicked "$logs/serve.log" | head -n 60; status=1
fi
exit $status
