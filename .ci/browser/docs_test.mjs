// The Swagger UI at /docs in a real browser (Debian's Chromium, driven by playwright-core),
// against a running gateway (GATEWAY_URL):
//   1. the served document has every operation of openapi.yaml;
//   2. /docs/ renders Swagger UI with every operation (method and path) of the document;
//   3. a scripted user, through "Try it out" only: registers, logs in, authorizes with the
//      access token (BearerAuth) and creates an API key; a plain HTTP call then finds the key.
// A full-page screenshot lands in target/browser-artifacts/docs.png, on success and on failure.
// Run by .ci/browser_test.sh; exits non-zero with a message on any failure.
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const base = (process.env.GATEWAY_URL || "http://127.0.0.1:8000").replace(/\/+$/, "");
const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const artifacts = join(repo, "target", "browser-artifacts");
const screenshotPath = join(artifacts, "docs.png");
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const TIMEOUT_MS = 20_000;
const PASSWORD = "correct horse battery";

class TestFailure extends Error {}
function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}
const log = (message) => console.log(`[docs] ${message}`);
const sorted = (set) => [...set].sort();
const minus = (a, b) => sorted(new Set([...a].filter((x) => !b.has(x))));

// --- The operations of openapi.yaml and of the served document --------------------------------

/// "METHOD /path" of every operation in openapi.yaml, read by indentation: the file keeps its
/// paths in block style, a path at two spaces under `paths:`, its methods at four.
function yamlOperations() {
  const lines = readFileSync(join(repo, "openapi.yaml"), "utf8").split("\n");
  const operations = new Set();
  let inPaths = false;
  let path = null;
  for (const line of lines) {
    if (/^\S/.test(line) && !line.startsWith("#")) {
      inPaths = /^paths:\s*$/.test(line);
      path = null;
      continue;
    }
    if (!inPaths) continue;
    const pathMatch = /^  (["']?)(\/[^"':]*)\1:\s*$/.exec(line);
    if (pathMatch) {
      path = pathMatch[2];
      continue;
    }
    const methodMatch = /^    ([a-z]+):/.exec(line);
    if (path && methodMatch && METHODS.includes(methodMatch[1])) {
      operations.add(`${methodMatch[1].toUpperCase()} ${path}`);
    }
  }
  return operations;
}

function documentOperations(document) {
  const operations = new Set();
  for (const [path, item] of Object.entries(document.paths || {})) {
    for (const method of METHODS) {
      if (item[method]) operations.add(`${method.toUpperCase()} ${path}`);
    }
  }
  return operations;
}

async function specOperations() {
  const response = await fetch(`${base}/api/v1/openapi.json`);
  check(response.ok, `GET /api/v1/openapi.json answered ${response.status}`);
  const document = await response.json();
  const served = documentOperations(document);
  const inYaml = yamlOperations();
  log(`served document: ${served.size} operations; openapi.yaml: ${inYaml.size}`);
  // The shell passes the count from a real YAML parser when python3 has `yaml`: it checks the
  // simple reading above.
  if (process.env.OPENAPI_YAML_OPERATIONS) {
    const parsed = Number(process.env.OPENAPI_YAML_OPERATIONS);
    check(
      parsed === inYaml.size,
      `openapi.yaml has ${parsed} operations by PyYAML, ${inYaml.size} by docs_test.mjs's reading`,
    );
  }
  check(
    served.size === inYaml.size && minus(inYaml, served).length === 0,
    `the served document and openapi.yaml differ: ${served.size} vs ${inYaml.size} operations; ` +
      `only in openapi.yaml: ${JSON.stringify(minus(inYaml, served))}; ` +
      `only served: ${JSON.stringify(minus(served, inYaml))}`,
  );
  check(served.size > 25, `only ${served.size} operations in the served document`);
  return { document, served };
}

// --- Swagger UI ---------------------------------------------------------------------------------

/// Waits until Swagger UI has rendered the document's tags. (A page looked at too early shows
/// Swagger UI's "LOADING" placeholder.) Collapsed tags have no operation blocks yet.
async function waitForSwaggerUi(page) {
  try {
    await page.waitForSelector(".swagger-ui .opblock-tag-section", { timeout: 30_000 });
  } catch (error) {
    const loading = await page.locator(".swagger-ui .loading-container").count();
    const errors = await page.locator(".swagger-ui .errors-wrapper").allInnerTexts();
    throw new TestFailure(
      `Swagger UI rendered no tag of the document within 30 s` +
        (loading ? " (still LOADING)" : "") +
        (errors.length ? `; its errors: ${errors.join(" | ")}` : ""),
    );
  }
}

/// The number of operation blocks, once it has settled.
async function settledOperationCount(page) {
  await page.waitForSelector(".swagger-ui .opblock");
  let previous = -1;
  for (let i = 0; i < 50; i++) {
    const count = await page.locator(".swagger-ui .opblock").count();
    if (count === previous) return count;
    previous = count;
    await page.waitForTimeout(100);
  }
  return previous;
}

/// Opens every collapsed tag (with `docExpansion: "none"` they all start collapsed).
async function expandAllTags(page) {
  const closed = await page.$$eval('.swagger-ui .opblock-tag[data-is-open="false"]', (tags) =>
    tags.map((tag) => tag.getAttribute("data-tag")),
  );
  for (const tag of closed) {
    const heading = page.locator(`.swagger-ui .opblock-tag[data-tag="${tag}"]`);
    await heading.click({ position: { x: 5, y: 5 } });
    await page.locator(`.swagger-ui .opblock-tag[data-tag="${tag}"][data-is-open="true"]`).waitFor();
  }
  if (closed.length) log(`expanded the collapsed tags ${JSON.stringify(closed)}`);
}

async function renderedOperations(page) {
  const pairs = await page.$$eval(".swagger-ui .opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "?";
      const pathEl = block.querySelector("[data-path]");
      return `${method.toUpperCase()} ${pathEl?.getAttribute("data-path") ?? "?"}`;
    }),
  );
  return new Set(pairs);
}

/// The operation's block, opened.
async function openOperation(page, method, path) {
  const block = page
    .locator(`.swagger-ui .opblock.opblock-${method.toLowerCase()}`)
    .filter({ has: page.locator(`[data-path="${path}"]`) })
    .first();
  check((await block.count()) === 1, `no operation block for ${method} ${path}`);
  if (!(await block.evaluate((el) => el.classList.contains("is-open")))) {
    await block.locator(".opblock-summary").first().click();
  }
  await block.locator(".opblock-body").waitFor();
  return block;
}

/// "Try it out" → the JSON body → "Execute"; the response code and body as the UI shows them.
async function tryItOut(page, method, path, body) {
  const block = await openOperation(page, method, path);
  await block.scrollIntoViewIfNeeded();
  const tryOut = block.locator("button.try-out__btn", { hasText: "Try it out" });
  if (await tryOut.count()) await tryOut.click();
  if (body !== undefined) {
    const textarea = block.locator("textarea.body-param__text");
    await textarea.waitFor();
    await textarea.fill(JSON.stringify(body, null, 2));
  }
  await block.locator("button.execute").click();
  const status = block.locator(".live-responses-table .response .response-col_status");
  await status.waitFor({ timeout: TIMEOUT_MS });
  const code = Number(/\d{3}/.exec(await status.innerText())?.[0]);
  const bodyEl = block.locator(".live-responses-table .response .response-col_description .microlight");
  const text = (await bodyEl.count()) ? (await bodyEl.first().innerText()).trim() : "";
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: the callers report the text.
  }
  const url = (await block.locator(".request-url pre").first().innerText().catch(() => "")).trim();
  const curl = (await block.locator(".curl-command").first().innerText().catch(() => "")).trim();
  log(`${method} ${path} through the UI → ${code} (request URL ${url || "?"})`);
  return { block, code, text, json, curl };
}

/// The 2xx code the document gives the operation.
function successCode(document, method, path) {
  const responses = document.paths?.[path]?.[method.toLowerCase()]?.responses ?? {};
  const codes = Object.keys(responses).filter((c) => /^2\d\d$/.test(c)).sort();
  check(codes.length > 0, `the document gives ${method} ${path} no 2xx response`);
  return Number(codes[0]);
}

async function authorize(page, scheme, token) {
  await page.locator(".swagger-ui .auth-wrapper button.authorize").first().click();
  const dialog = page.locator(".swagger-ui .dialog-ux .modal-ux");
  await dialog.waitFor();
  const container = dialog
    .locator(".auth-container")
    .filter({ has: page.locator("h4 code", { hasText: new RegExp(`^${scheme}$`) }) });
  check((await container.count()) === 1, `no ${scheme} section in the Authorize dialog`);
  await container.locator("input#auth-bearer-value").fill(token);
  await container.locator("button.authorize", { hasText: "Authorize" }).click();
  await container.locator("h6", { hasText: "Authorized" }).waitFor();
  await container.locator("button.btn-done", { hasText: "Close" }).click();
  await dialog.waitFor({ state: "detached" });
  log(`authorized ${scheme} in the Authorize dialog`);
}

// --- The run ------------------------------------------------------------------------------------

async function run(page) {
  const { document, served } = await specOperations();

  const response = await page.goto(`${base}/docs`, { waitUntil: "load" });
  check(response?.ok(), `GET /docs answered ${response?.status()}`);
  check(new URL(page.url()).pathname === "/docs/", `/docs landed on ${page.url()}, not /docs/`);
  await waitForSwaggerUi(page);
  await expandAllTags(page);
  const blocks = await settledOperationCount(page);
  const rendered = await renderedOperations(page);
  log(`Swagger UI rendered ${blocks} operation blocks, ${rendered.size} distinct operations`);
  const missing = minus(served, rendered);
  const extra = minus(rendered, served);
  check(
    missing.length === 0 && extra.length === 0,
    `Swagger UI's operations differ from the document's: missing ${JSON.stringify(missing)}; ` +
      `not in the document ${JSON.stringify(extra)}`,
  );
  log(`all ${served.size} operations of the document are listed at /docs/`);

  const email = `browser-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
  const registered = await tryItOut(page, "POST", "/api/v1/auth/register", {
    email,
    password: PASSWORD,
    name: "Browser Test",
  });
  const registerCode = successCode(document, "POST", "/api/v1/auth/register");
  check(
    registered.code === registerCode && registered.json?.email === email,
    `register through the UI: expected ${registerCode} with the email, got ${registered.code}: ${registered.text}`,
  );

  const loggedIn = await tryItOut(page, "POST", "/api/v1/auth/login", { email, password: PASSWORD });
  const token = loggedIn.json?.access_token;
  check(
    loggedIn.code === successCode(document, "POST", "/api/v1/auth/login") && typeof token === "string",
    `login through the UI: expected an access_token, got ${loggedIn.code}: ${loggedIn.text}`,
  );
  log(`logged in as ${email}; access token read from the rendered response`);

  const scheme = Object.entries(document.components?.securitySchemes ?? {}).find(
    ([, s]) => s.type === "http" && s.scheme?.toLowerCase() === "bearer",
  )?.[0];
  check(scheme === "BearerAuth", `the document's bearer scheme is ${scheme}, expected BearerAuth`);
  await authorize(page, scheme, token);

  const keyCode = successCode(document, "POST", "/api/v1/auth/keys");
  const created = await tryItOut(page, "POST", "/api/v1/auth/keys", { name: "browser" });
  const key = created.json?.key;
  check(
    created.code === keyCode && typeof key === "string" && key.startsWith("sk-") && created.json?.name === "browser",
    `create an API key through the UI: expected ${keyCode} with an sk- key named "browser", ` +
      `got ${created.code}: ${created.text}`,
  );
  check(
    created.curl.includes(`Bearer ${token}`),
    "Swagger UI did not send the access token with POST /api/v1/auth/keys (its curl line lacks it)",
  );
  log(`the UI shows ${created.code} and a new key ${created.json.key_prefix}…`);
  await created.block.scrollIntoViewIfNeeded();

  // Cross-check, outside the browser: the key is listed for this user.
  const listed = await fetch(`${base}/api/v1/auth/keys`, { headers: { authorization: `Bearer ${token}` } });
  const keys = await listed.json().catch(() => null);
  check(listed.status === 200 && Array.isArray(keys), `GET /api/v1/auth/keys answered ${listed.status}`);
  const found = keys.find((k) => k.name === "browser" && k.is_active && key.startsWith(k.key_prefix));
  check(found, `GET /api/v1/auth/keys does not list the new key: ${JSON.stringify(keys)}`);
  log(`GET /api/v1/auth/keys lists it (id ${found.id}, prefix ${found.key_prefix})`);
  return served.size;
}

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // Playwright gives the browser a fresh temporary profile (its --user-data-dir) per launch.
    // Without the background-networking switches Chromium's own calls to the closed network
    // get refused.
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
  log(`Chromium ${browser.version()} from ${chromiumPath}; gateway ${base}`);
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT_MS);
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));

  let status = 0;
  try {
    const operations = await run(page);
    log(`PASS: ${operations} operations listed; register, login, Authorize and API key creation through the UI`);
  } catch (error) {
    status = 1;
    console.error(`[docs] FAIL: ${error instanceof TestFailure ? error.message : error.stack || error}`);
    for (const problem of problems) console.error(`[docs]   browser ${problem}`);
  } finally {
    try {
      await page.screenshot({ path: screenshotPath, fullPage: true });
      log(`screenshot: ${relative(process.cwd(), screenshotPath) || screenshotPath}`);
    } catch (error) {
      console.error(`[docs] no screenshot: ${error.message}`);
      status = 1;
    }
    await browser.close();
  }
  process.exit(status);
}

main().catch((error) => {
  console.error(`[docs] FAIL: ${error.stack || error}`);
  process.exit(1);
});
