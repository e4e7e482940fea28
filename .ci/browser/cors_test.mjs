// A web app on another origin, in a real browser (Debian's Chromium, driven by playwright-core),
// against a running gateway (GATEWAY_URL) started with MORPHEUS_CORS_ALLOWED_ORIGINS=APP_ORIGIN
// and the demo marketplace:
//   1. a page served from APP_ORIGIN registers, logs in, creates an API key, turns automation
//      on, and streams a chat with fetch(), reading the events as they arrive and the answer's
//      X-Request-Id (an exposed header);
//   2. a page on an origin that is not listed cannot read the gateway's answers (fetch rejects).
// Chromium enforces CORS itself: nothing here reads around it. The pages are served by small
// HTTP servers of this script's on the loopback interface, as a web app's dev server would be
// (a page from a public origin calling 127.0.0.1 would meet Chromium's local-network checks,
// which have nothing to do with CORS).
// Run by .ci/browser_test.sh; exits non-zero with a message on any failure.
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const base = (process.env.GATEWAY_URL || "http://127.0.0.1:8000").replace(/\/+$/, "");
const appOrigin = process.env.APP_ORIGIN || "http://127.0.0.1:3000";
const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TIMEOUT_MS = 20_000;

class TestFailure extends Error {}
function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}
const log = (message) => console.log(`[cors] ${message}`);

/// What the web app does, run in the page (so every call is a cross-origin fetch).
async function webApp(base) {
  const json = async (method, path, token, body) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body ? { "content-type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const email = `cors-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
  const password = "correct horse battery";
  await json("POST", "/api/v1/auth/register", null, { email, password });
  const { access_token: access } = await json("POST", "/api/v1/auth/login", null, { email, password });
  const { key } = await json("POST", "/api/v1/auth/keys", access, { name: "web app" });
  await json("PUT", "/api/v1/automation/settings", key, { is_enabled: true });
  const models = await json("GET", "/api/v1/models", key);
  const model = models.data[0].id;
  const response = await fetch(`${base}/api/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({
      model,
      stream: true,
      messages: [{ role: "user", content: "hello from another origin" }],
    }),
  });
  if (!response.ok) throw new Error(`chat: ${response.status} ${await response.text()}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let reads = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    reads += 1;
    text += decoder.decode(value, { stream: true });
  }
  const events = text.split("\n").filter((line) => line.startsWith("data: "));
  const content = events
    .filter((line) => line !== "data: [DONE]")
    .map((line) => JSON.parse(line.slice(6)).choices?.[0]?.delta?.content || "")
    .join("");
  return {
    email,
    model,
    reads,
    events: events.length,
    done: events.at(-1) === "data: [DONE]",
    content,
    requestId: response.headers.get("x-request-id"),
    contentType: response.headers.get("content-type"),
  };
}

/// What a page on an origin that is not listed gets: a rejected fetch, whatever the gateway did.
async function otherPage(base) {
  try {
    await fetch(`${base}/health`);
    return "read";
  } catch (error) {
    return `rejected: ${error.name}`;
  }
}

/// Serves an empty page on `port` of 127.0.0.1 (0: any free port); resolves to its origin.
function pageServer(port) {
  const server = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>web app</title>");
  });
  return new Promise((resolve) =>
    server.listen(port, "127.0.0.1", () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` })),
  );
}

async function main() {
  const app = await pageServer(Number(new URL(appOrigin).port));
  const other = await pageServer(0);
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  log(`Chromium ${browser.version()}; gateway ${base}; app origin ${appOrigin}`);
  let status = 0;
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    // What the browser says about a blocked request (the page only sees "Failed to fetch").
    page.on("console", (m) => m.type() === "error" && log(`browser console: ${m.text()}`));
    page.on("requestfailed", (r) => log(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(`${appOrigin}/`);
    const result = await page.evaluate(webApp, base);
    log(`web app: ${JSON.stringify(result)}`);
    check(result.contentType?.startsWith("text/event-stream"), `the chat was not a stream: ${result.contentType}`);
    check(result.done, "the stream did not end with data: [DONE]");
    check(result.events >= 3 && result.content.length > 0, `too little streamed: ${result.events} events`);
    check(result.requestId, "X-Request-Id is not exposed to the page");

    const otherTab = await context.newPage();
    await otherTab.goto(`${other.origin}/`);
    const outcome = await otherTab.evaluate(otherPage, base);
    log(`a page on ${other.origin}: ${outcome}`);
    check(outcome.startsWith("rejected"), `a page on an origin that is not listed read an answer`);
    log("PASS: a page on the listed origin logged in, made a key and streamed a chat; another origin could not read");
  } catch (error) {
    status = 1;
    console.error(`[cors] FAIL: ${error instanceof TestFailure ? error.message : error.stack || error}`);
  } finally {
    await browser.close();
    app.server.close();
    other.server.close();
  }
  process.exit(status);
}

main().catch((error) => {
  console.error(`[cors] FAIL: ${error.stack || error}`);
  process.exit(1);
});
