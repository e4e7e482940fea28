#!/usr/bin/env bash
# G1: schemathesis against the running gateway, over every operation of openapi.yaml, with real
# credentials (see schemathesis_hooks.py), all checks, and no baseline of accepted failures.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5" "requests>=2.31"
fi

cargo build --quiet --bin morpheus-gateway
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
admin_token="schemathesis-operator-$port-token"

# Generous limits: the run hammers login, key creation and rated bids from one address.
MORPHEUS_BIND="127.0.0.1:$port" \
DATABASE_URL="sqlite://$work/schemathesis.db" \
MORPHEUS_DATA_DIR="$work" \
MORPHEUS_LOGIN_ATTEMPTS_PER_CLIENT=1000000 \
MORPHEUS_LOGIN_ATTEMPTS_PER_ACCOUNT_CLIENT=1000000 \
MORPHEUS_LOGIN_FAILURES_PER_ACCOUNT=1000000 \
MORPHEUS_RATED_BIDS_PER_CLIENT=1000000 \
MORPHEUS_MAX_API_KEYS_PER_USER=1000000 \
MORPHEUS_REGISTRATIONS_PER_CLIENT=1000000 \
MORPHEUS_SIMULATE_MARKETPLACE=true \
MORPHEUS_ADMIN_TOKEN="$admin_token" \
MORPHEUS_DIAMOND_CONTRACT_ADDRESS=0xb8C55cD613af947E73E262F0d3C54b7211Af16CF \
RUST_LOG=warn \
  target/debug/morpheus-gateway serve > "$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "$url/health" > /dev/null 2>&1 && break
  sleep 0.1
done

status=0
# Pass 1: every operation, each with the credential its scheme needs (minted by the hooks).
GATEWAY_URL="$url" ADMIN_TOKEN="$admin_token" PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$venv/bin/st" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "$url" \
    --exclude-path-regex '^/api/v1/chat-history/' \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed 42 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir target/schemathesis || status=$?

# Pass 2: two identities (Web Fuzzing Commons auth file), so `object_level_authorization` can
# replay one user's reads as the other. Account operations only: they are the ones with
# per-user objects, and deleting an account would end an identity mid-run.
password="correct horse battery"
for who in alice bob; do
  curl -fsS "$url/api/v1/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$who@example.com\",\"password\":\"$password\"}" > /dev/null
done
cat > "$work/identities.json" <<JSON
{
  "auth": [
    {"name": "alice", "loginEndpointAuth": {"endpoint": "/api/v1/auth/login", "verb": "POST",
      "contentType": "application/json",
      "payloadUserPwd": {"username": "alice@example.com", "usernameField": "email",
                         "password": "$password", "passwordField": "password"},
      "token": {"extractFrom": "body", "extractSelector": "/access_token", "sendIn": "header",
                "sendName": "Authorization", "sendTemplate": "Bearer {token}"}}},
    {"name": "bob", "loginEndpointAuth": {"endpoint": "/api/v1/auth/login", "verb": "POST",
      "contentType": "application/json",
      "payloadUserPwd": {"username": "bob@example.com", "usernameField": "email",
                         "password": "$password", "passwordField": "password"},
      "token": {"extractFrom": "body", "extractSelector": "/access_token", "sendIn": "header",
                "sendName": "Authorization", "sendTemplate": "Bearer {token}"}}}
  ]
}
JSON
"$venv/bin/st" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "$url" \
    --auth-wfc "$work/identities.json" \
    --include-path-regex '^/api/v1/auth/(keys|me|private-key|delegation)' \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed 42 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir target/schemathesis-identities || status=$?

# Pass 3: the chat route alone, with no 400 accepted for a schema-valid request (pass 1 accepts
# one there): every bound the server enforces is in the contract, so a request the schema
# allows must not be refused. Short: about half a minute.
GATEWAY_URL="$url" PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$venv/bin/st" --config-file .ci/schemathesis-chat.toml run openapi.yaml \
    --url "$url" \
    --include-operation-id create_chat_completion_api_v1_chat_completions_post \
    --checks all \
    --phases examples,coverage,fuzzing \
    --max-examples "${SCHEMATHESIS_CHAT_MAX_EXAMPLES:-100}" \
    --seed 42 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir target/schemathesis-chat || status=$?

# Pass 4: the chat history, every check but `use_after_free`. `DELETE /chats/{chat_id}`
# archives by default (the 2026 Morpheus gateway's contract, `archive_only=true`), so the chat
# stays readable, renamable and writable after it: that 2xx is the documented answer, not a
# deleted resource still served. A per-operation `enabled = false` in the config file cannot
# express this: `--checks all` on the command line overrides it (schemathesis 4.32).
GATEWAY_URL="$url" ADMIN_TOKEN="$admin_token" PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$venv/bin/st" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "$url" \
    --include-path-regex '^/api/v1/chat-history/' \
    --checks all \
    --exclude-checks use_after_free \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed 42 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir target/schemathesis-chat-history || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); gateway log tail:"
  tail -n 50 "$work/gateway.log"
fi
exit "$status"
