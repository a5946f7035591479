// LTI 1.3 in a real browser: an LMS course page embeds the tutor in an iframe on another site,
// and everything an LMS does happens for real in Chromium: the login initiation, the redirect to
// the platform's auth endpoint, the auto-submitted id_token (a cross-site POST that must carry
// the tutor's state cookie), the lesson page with the widget, a question answered with the
// session token, and the deep-linking picker whose signed answer the platform verifies.
//
// Two local servers take part:
//   - a fake platform on `localhost` (a different site from 127.0.0.1): course pages, the OIDC
//     auth endpoint that signs id_tokens with its own RSA key, its JWKS, and the deep-linking
//     return URL, which verifies the tutor's JWT against the tutor's published keys;
//   - the real `tutor serve` ($TUTOR_BIN) on 127.0.0.1 with LTI configured, API keys required,
//     and the embedded extractive answerer (no model).
//
// Run with run.sh, or: TUTOR_BIN=... TUTOR_LESSONS=... node --test lti.test.mjs

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { axeViolations, freePort, launchChromium, listen, readBody, startTutor as runTutor } from "./support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const TUTOR_BIN = process.env.TUTOR_BIN;
const TUTOR_LESSONS = process.env.TUTOR_LESSONS || path.join(repo, "lessons");

const ISSUER = "https://lms.test";
const CLIENT_ID = "tutor-in-the-browser";
const DEPLOYMENT = "deployment-7";
const LESSON = "hybrid-routing";
const LTI = "https://purl.imsglobal.org/spec/lti/claim/";
const DL = "https://purl.imsglobal.org/spec/lti-dl/claim/";

let platform = null;
let platformPort = 0;
let tutor = null; // the real tutor: { origin, output(), stop() }
let tutorOrigin = "";
let workDir = null;
let browser = null;
const authRequests = []; // query parameters the auth endpoint received
const returned = []; // {claims, verified} posted back by the deep-linking picker

// ------------------------------------------------------------------------------------------------
// The platform's key and JWTs (node:crypto; no JWT library on this side on purpose).

const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const PLATFORM_KID = "platform-browser-key";
const platformJwk = { ...publicKey.export({ format: "jwk" }), kid: PLATFORM_KID, alg: "RS256", use: "sig" };

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

function signJwt(claims) {
  const head = `${b64url({ alg: "RS256", typ: "JWT", kid: PLATFORM_KID })}.${b64url(claims)}`;
  return `${head}.${crypto.sign("RSA-SHA256", Buffer.from(head), privateKey).toString("base64url")}`;
}

/** Verifies a JWT with the tutor's published JWKS, as a platform does. */
async function verifyWithToolKeys(jwt) {
  const [head, body, signature] = jwt.split(".");
  const header = JSON.parse(Buffer.from(head, "base64url").toString("utf8"));
  const { keys } = await (await fetch(`${tutorOrigin}/.well-known/jwks.json`)).json();
  const jwk = keys.find((k) => k.kid === header.kid);
  if (header.alg !== "RS256" || !jwk) return { verified: false, claims: null };
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  const verified = crypto.verify("RSA-SHA256", Buffer.from(`${head}.${body}`), key, Buffer.from(signature, "base64url"));
  return { verified, claims: JSON.parse(Buffer.from(body, "base64url").toString("utf8")) };
}

function idToken(query) {
  const now = Math.floor(Date.now() / 1000);
  const common = {
    iss: ISSUER,
    aud: CLIENT_ID,
    azp: CLIENT_ID,
    sub: "browser-learner",
    iat: now,
    exp: now + 300,
    nonce: query.get("nonce"),
    [`${LTI}version`]: "1.3.0",
    [`${LTI}deployment_id`]: DEPLOYMENT,
    [`${LTI}target_link_uri`]: `${tutorOrigin}/lti/launch`,
    [`${LTI}roles`]: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
    [`${LTI}context`]: { id: "course-9", title: "Model Choices 101" },
  };
  if (query.get("lti_message_hint") === "deep-link") {
    return signJwt({
      ...common,
      [`${LTI}message_type`]: "LtiDeepLinkingRequest",
      [`${DL}deep_linking_settings`]: {
        deep_link_return_url: `http://localhost:${platformPort}/deep-link-return`,
        accept_types: ["ltiResourceLink"],
        accept_presentation_document_targets: ["iframe"],
        data: "platform-opaque-42",
      },
    });
  }
  return signJwt({
    ...common,
    [`${LTI}message_type`]: "LtiResourceLinkRequest",
    [`${LTI}resource_link`]: { id: "link-9", title: "Ask about hybrid routing" },
    [`${LTI}custom`]: { lesson_id: LESSON },
  });
}

const escapeHtml = (text) =>
  String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function html(response, body, status = 200) {
  response.writeHead(status, { "Content-Type": "text/html; charset=utf-8" });
  response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LMS</title></head><body>${body}</body></html>`);
}

function platformServer() {
  return http.createServer(async (request, response) => {
    const url = new URL(request.url, `http://localhost:${platformPort}`);
    if (url.pathname === "/jwks") {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ keys: [platformJwk] }));
    } else if (url.pathname === "/course") {
      // The course page: the tool in an iframe, started by a login initiation.
      const login = new URL(`${tutorOrigin}/lti/login`);
      login.search = new URLSearchParams({
        iss: ISSUER,
        login_hint: "browser-learner",
        target_link_uri: `${tutorOrigin}/lti/launch`,
        lti_message_hint: url.searchParams.get("hint") || "resource",
        client_id: CLIENT_ID,
        lti_deployment_id: DEPLOYMENT,
      }).toString();
      html(
        response,
        `<h1>Model Choices 101</h1><iframe id="tool" title="Lesson tutor" src="${escapeHtml(login)}" style="width:1100px;height:760px;border:0"></iframe>`,
      );
    } else if (url.pathname === "/auth") {
      // The OIDC auth endpoint: checks the request, then posts the id_token back (form_post).
      authRequests.push(Object.fromEntries(url.searchParams));
      const q = url.searchParams;
      const ok =
        q.get("scope") === "openid" &&
        q.get("response_type") === "id_token" &&
        q.get("response_mode") === "form_post" &&
        q.get("prompt") === "none" &&
        q.get("client_id") === CLIENT_ID &&
        q.get("redirect_uri") === `${tutorOrigin}/lti/launch` &&
        q.get("nonce") &&
        q.get("state");
      if (!ok) return html(response, "<p>bad auth request</p>", 400);
      html(
        response,
        `<form id="f" method="post" action="${escapeHtml(q.get("redirect_uri"))}">
           <input type="hidden" name="id_token" value="${escapeHtml(idToken(q))}">
           <input type="hidden" name="state" value="${escapeHtml(q.get("state"))}">
         </form><script>document.getElementById("f").submit()</script>`,
      );
    } else if (url.pathname === "/deep-link-return" && request.method === "POST") {
      const form = new URLSearchParams(await readBody(request));
      const outcome = await verifyWithToolKeys(form.get("JWT") || "");
      returned.push(outcome);
      const items = outcome.claims?.[`${DL}content_items`] || [];
      html(response, `<h1 id="saved">Saved: ${escapeHtml(items[0]?.custom?.lesson_id || "nothing")}</h1>`);
    } else {
      html(response, "not found", 404);
    }
  });
}

// ------------------------------------------------------------------------------------------------

async function startTutor() {
  const port = await freePort();
  tutorOrigin = `http://127.0.0.1:${port}`;
  workDir = mkdtempSync(path.join(tmpdir(), "tutor-lti-browser-"));
  const digest = crypto.createHash("sha256").update("browser-test-server-key").digest("hex");
  const config = path.join(workDir, "tutor.toml");
  writeFileSync(
    config,
    `lessons = ${JSON.stringify(TUTOR_LESSONS)}
index = ${JSON.stringify(path.join(workDir, "index"))}
addr = "127.0.0.1:${port}"

[[keys]]
name = "lms-backend"
sha256 = "${digest}"

[lti]
url = "${tutorOrigin}"
keys_dir = ${JSON.stringify(path.join(workDir, "lti-keys"))}

[[lti.platforms]]
name = "browser LMS"
issuer = "${ISSUER}"
client_id = "${CLIENT_ID}"
auth_url = "http://localhost:${platformPort}/auth"
jwks_url = "http://127.0.0.1:${platformPort}/jwks"
deployments = ["${DEPLOYMENT}"]
`,
  );
  const env = { ...process.env };
  for (const name of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "TUTOR_MODEL", "TUTOR_LESSONS", "TUTOR_INDEX", "TUTOR_PAGES_KEY"]) {
    delete env[name];
  }
  tutor = await runTutor(TUTOR_BIN, port, ["--config", config, "serve"], { cwd: workDir, env });
}

before(async () => {
  assert.ok(TUTOR_BIN, "TUTOR_BIN must name the tutor binary");
  platform = platformServer();
  // Bound on 127.0.0.1 but addressed as `localhost` by the browser: another site.
  platformPort = await listen(platform);
  await startTutor();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (tutor) await tutor.stop();
  if (platform) {
    platform.closeAllConnections?.();
    await new Promise((resolve) => platform.close(resolve));
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** The tool's frame once it shows a page of the tutor other than the login redirect. */
async function toolFrame(page, selector) {
  const frame = page.frameLocator("#tool");
  await frame.locator(selector).first().waitFor({ timeout: 30_000 });
  return page.frames().find((f) => f.url().startsWith(tutorOrigin));
}

test("a learner launched from the LMS gets the lesson and answers, inside the course page's iframe", { timeout: 90_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const chatRequests = [];
  page.on("request", (request) => {
    if (request.url() === `${tutorOrigin}/v1/chat`) chatRequests.push(request.headers());
  });
  await page.goto(`http://localhost:${platformPort}/course`);
  const frame = await toolFrame(page, "h1");
  assert.equal(await frame.locator("h1").first().textContent(), "Hybrid Routing Between Open and Closed Models");
  const landed = new URL(frame.url());
  assert.equal(landed.pathname, `/lti/lessons/${LESSON}`, "the launch redirected to the lesson page");
  assert.match(landed.hash, /^#session=[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal(authRequests.at(-1).lti_message_hint, "resource");
  assert.equal(await frame.locator('a[href="/"]').count(), 0, "no way out of the course into the catalog");

  const widget = (selector) => frame.locator("lesson-tutor").locator(selector);
  // The lesson page shows the tutor as a section of the page: no launcher to press.
  await widget(".panel").waitFor({ state: "visible" });
  assert.equal(await widget(".launcher").isVisible(), false);
  await widget("textarea").fill("Why send easy requests to an open model?");
  await widget("textarea").press("Enter");
  await frame.waitForFunction(
    () => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > 0,
    null,
    { timeout: 30_000 },
  );
  const last = await frame.evaluate(() => {
    const node = [...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg")].pop();
    return { className: node.className, text: node.textContent };
  });
  assert.match(last.className, /assistant/, `an answer, not an error: ${last.text}\n${tutor.output()}`);
  assert.ok(last.text.length > 40, last.text);
  assert.equal(chatRequests.length, 1);
  assert.match(chatRequests[0].authorization || "", /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, "the session token rode along");

  // Reloading the frame keeps the lesson and the session (the page is a GET, the token in its
  // fragment): the learner can go on asking. (Chromium denies localStorage to this third-party
  // frame, so the widget keeps the conversation in the page only and a reload starts afresh.)
  await Promise.all([frame.waitForNavigation(), frame.evaluate(() => location.reload())]);
  const reloaded = await toolFrame(page, "h1");
  const again = (selector) => reloaded.locator("lesson-tutor").locator(selector);
  await again(".panel").waitFor({ state: "visible" });
  const finished = () =>
    reloaded.evaluate(
      () => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length,
    );
  const before = await finished();
  await again("textarea").fill("What does a router do?");
  await again("textarea").press("Enter");
  await reloaded.waitForFunction(
    (count) =>
      document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > count,
    before,
    { timeout: 30_000 },
  );
  const after = await reloaded.evaluate(() => {
    const node = [...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg")].pop();
    return node.className;
  });
  assert.match(after, /assistant/, "answered after the reload");
  assert.equal(chatRequests.length, 2);
  assert.equal(chatRequests[1].authorization, chatRequests[0].authorization);

  // The API itself stays closed to anyone without a key or a session.
  const open = await fetch(`${tutorOrigin}/v1/chat`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ lesson_id: LESSON, message: "Why send easy requests to an open model?" }),
  });
  assert.equal(open.status, 401);

  assert.deepEqual(await axeViolations(frame), []);
  await page.screenshot({ path: path.join(repo, "target", "screenshots", "lti-launch.png") });
  await context.close();
});

test("an instructor picks a lesson and the platform receives a link it can verify", { timeout: 90_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`http://localhost:${platformPort}/course?hint=deep-link`);
  const frame = await toolFrame(page, "#lesson-filter");
  assert.equal(await frame.locator("h1").textContent(), "Choose a lesson");
  assert.deepEqual(await axeViolations(frame), []);
  await frame.locator("#lesson-filter").fill("routing");
  const visible = frame.locator("#lesson-choices > li:not([hidden])");
  assert.equal(await visible.count(), 1, "the filter narrows the list");
  await visible.getByRole("button", { name: /Choose/ }).click();

  await page.frameLocator("#tool").locator("#saved").waitFor({ timeout: 30_000 });
  assert.equal(returned.length, 1);
  const { verified, claims } = returned[0];
  assert.ok(verified, "the JWT verifies against the tutor's JWKS");
  assert.equal(claims[`${LTI}message_type`], "LtiDeepLinkingResponse");
  assert.equal(claims.aud, ISSUER);
  assert.equal(claims.iss, CLIENT_ID);
  assert.equal(claims[`${DL}data`], "platform-opaque-42");
  assert.equal(claims[`${DL}content_items`][0].custom.lesson_id, LESSON);
  await context.close();
});
