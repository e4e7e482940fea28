#!/usr/bin/env bash
# G2: the official `openai` Python SDK against the running gateway, which talks to the
# proxy-router simulator running as its own process (so the test can switch its faults), and to
# a plain OpenAI-compatible provider (morpheus-openai-mock, with its own key) declared in a
# providers file beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/openai-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai, pytest, httpx' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0" "pytest==9.2.0" "httpx==0.28.1"
fi

cargo build --quiet --bin morpheus-gateway
cargo build --quiet -p morpheus-router-sim --bin morpheus-router-sim
cargo build --quiet -p morpheus-openai-mock --bin morpheus-openai-mock
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port)
mock_port=$(free_port)
port=$(free_port)

target/debug/morpheus-router-sim --bind "127.0.0.1:$sim_port" > "$work/sim.log" 2>&1 &
sim=$!
target/debug/morpheus-openai-mock --bind "127.0.0.1:$mock_port" --name mock --api-key sk-mock-provider-key \
  --model llama-3.3-70b --model text-embedding-3-small --model tts-1 --model whisper-1 > "$work/mock.log" 2>&1 &
mock=$!
cat > "$work/providers.toml" <<EOF
[[providers]]
name = "mock"
base_url = "http://127.0.0.1:$mock_port/v1"
api_key_env = "MOCK_PROVIDER_KEY"
models = [
  { name = "provider-llama", upstream = "llama-3.3-70b" },
  { name = "provider-embedder", upstream = "text-embedding-3-small", type = "EMBEDDING" },
  { name = "provider-voice", upstream = "tts-1", type = "TTS" },
  { name = "provider-ears", upstream = "whisper-1", type = "STT" },
]
EOF
MORPHEUS_BIND="127.0.0.1:$port" \
DATABASE_URL="sqlite://$work/sdk.db" \
MORPHEUS_DATA_DIR="$work" \
MORPHEUS_PROXY_ROUTER_URL="http://127.0.0.1:$sim_port" \
MORPHEUS_PROXY_ROUTER_USER=morpheus \
MORPHEUS_PROXY_ROUTER_PASSWORD=sim-password \
MORPHEUS_PROVIDERS_FILE="$work/providers.toml" \
MOCK_PROVIDER_KEY=sk-mock-provider-key \
RUST_LOG=warn \
  target/debug/morpheus-gateway serve > "$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway $sim $mock 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
  sleep 0.1
done

status=0
GATEWAY_URL="http://127.0.0.1:$port" SIM_URL="http://127.0.0.1:$sim_port" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider .ci/openai_sdk_test.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "OpenAI SDK test failed ($status); gateway log tail:"
  tail -n 50 "$work/gateway.log"
fi
exit "$status"
