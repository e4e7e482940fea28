#!/usr/bin/env bash
# The Swagger UI at /docs in a real browser: Debian's Chromium, driven by playwright-core (which
# never downloads a browser of its own), against the running gateway. See browser/docs_test.mjs.
# Its artifact: a full-page screenshot in target/browser-artifacts/docs.png.
# Then a web app on another origin that the gateway lists (CORS) logs in and streams a chat
# from the demo marketplace, and a page on an unlisted origin cannot read: browser/cors_test.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  install_chromium() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; }
  # Refresh the package lists only when they do not know chromium or are too old to fetch it.
  if ! apt-cache show chromium > /dev/null 2>&1 || ! install_chromium; then
    apt-get update -qq
    install_chromium
  fi
fi
# Debian's launcher may say "[: …: unexpected operator" here: /etc/chromium.d/dev-shm reads two
# lines from findmnt when /dev/shm is mounted twice. Harmless (it only skips a flag for small shm).
"$chromium" --version

# playwright-core, exactly as package-lock.json pins it; reinstalled when the lock changes.
browser_dir=.ci/browser
if ! cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.ci-installed-lock"; then
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser_dir/package-lock.json" "$browser_dir/node_modules/.ci-installed-lock"
fi

# The operations of openapi.yaml by a real YAML parser, when python3 has one: the test checks
# its own simple reading of the file against this count.
methods='("get", "put", "post", "delete", "options", "head", "patch", "trace")'
yaml_operations=$(python3 -c "import yaml
paths = yaml.safe_load(open('openapi.yaml'))['paths']
print(sum(m in $methods for item in paths.values() for m in item))" 2> /dev/null || true)
if [ -z "$yaml_operations" ]; then
  echo "(python3 has no yaml module: the test reads openapi.yaml by itself only)"
fi

cargo build --quiet --bin morpheus-gateway
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

# The web app's origin: cors_test.mjs serves its page there, as a dev server would.
app_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
app_origin="http://127.0.0.1:$app_port"
MORPHEUS_BIND="127.0.0.1:$port" \
MORPHEUS_CORS_ALLOWED_ORIGINS="$app_origin" \
MORPHEUS_SIMULATE_MARKETPLACE=true \
DATABASE_URL="sqlite://$work/browser.db" \
MORPHEUS_DATA_DIR="$work" \
RUST_LOG=warn \
  target/debug/morpheus-gateway serve > "$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null || true; wait $gateway 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 150); do
  curl -fsS "$url/health" > /dev/null 2>&1 && break
  if ! kill -0 "$gateway" 2> /dev/null; then break; fi
  sleep 0.1
done

status=0
if ! curl -fsS "$url/health" > /dev/null 2>&1; then
  echo "the gateway did not become healthy at $url"
  status=1
else
  GATEWAY_URL="$url" CHROMIUM_PATH="$chromium" OPENAPI_YAML_OPERATIONS="$yaml_operations" \
    node "$browser_dir/docs_test.mjs" || status=$?
  GATEWAY_URL="$url" CHROMIUM_PATH="$chromium" APP_ORIGIN="$app_origin" \
    node "$browser_dir/cors_test.mjs" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "browser tests failed ($status); gateway log tail:"
  tail -n 50 "$work/gateway.log"
fi
exit "$status"
