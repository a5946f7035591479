// End-to-end tests of the learner widget and the lesson pages, in headless Chromium.
//
// Three local servers take part, each on its own port of 127.0.0.1:
//   - a fake OpenAI-compatible model (streaming and JSON) that records what it is asked;
//   - the real `tutor serve` ($TUTOR_BIN) over the repo's lessons ($TUTOR_LESSONS), pointed at it;
//   - a host page server on another origin, which embeds the widget the way a course site would,
//     and also plays a scripted tutor API for the failure cases the real server cannot be made
//     to produce on demand (split events, errors mid-stream, 429, 5xx, dropped connections).
//
// Run with run.sh, or: TUTOR_BIN=... TUTOR_LESSONS=... node --test widget.test.mjs

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { axeViolations, freePort, launchChromium, listen as listenOn, readBody, sleep, startTutor as runTutor } from "./support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const widgetPath = path.join(repo, "assets", "widget.js");
const stringsPath = path.join(repo, "assets", "widget-strings.json");
const screenshotDir = path.join(repo, "target", "screenshots");

const TUTOR_BIN = process.env.TUTOR_BIN;
const TUTOR_LESSONS = process.env.TUTOR_LESSONS || path.join(repo, "lessons");
const LESSON = "choosing-a-deployment";
const OFF_TOPIC = "How do I bake sourdough bread?";

// The fake model's streamed answer, word by word: three sentences the lesson supports around one it
// does not (an invented company and year), which the tutor must never show, even for a moment.
const MODEL_WORDS = (
  "Choose the deployment you can operate well today [1]. " +
  "Closed APIs were invented by Globex in 1987 [1]. " +
  "Keep your prompts and evaluations portable so that moving tomorrow stays cheap [1]. " +
  "If the task demands the very best reasoning, start with a closed API [2]."
)
  .split(/(?<= )/);
const INVENTED = /Globex|1987/;
const MODEL_ANSWER = MODEL_WORDS.join("");
const WORD_DELAY_MS = 120;

// ------------------------------------------------------------------------------------------------
// Processes and servers, all stopped in after() through the handles kept here.

const servers = [];
let tutor = null; // the real tutor: { origin, output(), stop() }
let indexDir = null;
let browser = null;

let tutorOrigin = "";
let hostOrigin = "";
let sections = []; // [{id, title}] of LESSON, from the API
const modelRequests = []; // bodies the fake model received
const fakeApiRequests = []; // {headers, body} the scripted tutor API received
const fakeFeedbackRequests = []; // {headers, body} of POST /fake/v1/feedback, which always fails

function listen(server) {
  servers.push(server);
  return listenOn(server);
}

/** A stand-in for an OpenAI-compatible provider: POST /v1/chat/completions, SSE or JSON. */
function fakeModel() {
  return http.createServer(async (request, response) => {
    const raw = await readBody(request);
    if (request.method !== "POST" || !request.url.endsWith("/chat/completions")) {
      response.writeHead(404, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    let body = {};
    try {
      body = JSON.parse(raw);
    } catch (_) {
      /* recorded as empty */
    }
    modelRequests.push(body);
    if (!body.stream) {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(
        JSON.stringify({
          id: "chatcmpl-fake",
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: body.model || "fake-model",
          choices: [{ index: 0, message: { role: "assistant", content: MODEL_ANSWER }, finish_reason: "stop" }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
      return;
    }
    response.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    const chunk = (delta, finish) =>
      `data: ${JSON.stringify({
        id: "chatcmpl-fake",
        object: "chat.completion.chunk",
        created: Math.floor(Date.now() / 1000),
        model: body.model || "fake-model",
        choices: [{ index: 0, delta, finish_reason: finish }],
      })}\n\n`;
    response.write(chunk({ role: "assistant", content: "" }, null));
    for (const word of MODEL_WORDS) {
      await sleep(WORD_DELAY_MS);
      if (response.destroyed) return;
      response.write(chunk({ content: word }, null));
    }
    response.write(chunk({}, "stop"));
    response.end("data: [DONE]\n\n");
  });
}

// The scripted tutor API's citation and answers.
const FAKE_CITATION = {
  n: 1,
  passage_id: "fake-lesson#brewing-1",
  lesson_id: "fake-lesson",
  section: "Brewing",
  section_id: "brewing",
  text: "A café crème is an espresso lengthened with hot water.",
};
const FAKE_ANSWER = "A **café crème** is a long *espresso* [1].\n\n- hot water\n- `espresso`";

function sse(name, data) {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

const fakeAttempts = new Map();

/** POST /fake/v1/chat: each question names the case it wants to see. */
async function fakeTutorApi(request, response) {
  const headers = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "content-type, x-tutor-key, authorization",
    "Access-Control-Expose-Headers": "retry-after",
  };
  if (request.method === "OPTIONS") {
    response.writeHead(204, headers);
    response.end();
    return;
  }
  const body = JSON.parse(await readBody(request));
  fakeApiRequests.push({ headers: request.headers, body });
  const attempt = (fakeAttempts.get(body.message) || 0) + 1;
  fakeAttempts.set(body.message, attempt);
  const done = {
    answer_id: `fake-${fakeApiRequests.length}`,
    answer: FAKE_ANSWER,
    refused: false,
    citations: [FAKE_CITATION],
    backend: "fake",
    related_lesson: null,
  };
  const json = (status, value, extra = {}) => {
    response.writeHead(status, { ...headers, "Content-Type": "application/json", ...extra });
    response.end(JSON.stringify(value));
  };
  const stream = () => response.writeHead(200, { ...headers, "Content-Type": "text/event-stream" });

  if (body.message.startsWith("split")) {
    // Every few bytes a new network chunk: lines, events and UTF-8 characters all get cut.
    const crlf = body.message.includes("crlf");
    let text =
      ": keep-alive\n\n" +
      sse("citations", { citations: [FAKE_CITATION] }) +
      sse("delta", { text: "A **café crème** is a long " }) +
      ": keep-alive\n\n" +
      sse("delta", { text: "*espresso* [1].\n\n- hot water\n- `espresso`" }) +
      sse("done", done);
    if (crlf) text = text.replace(/\n/g, "\r\n");
    const bytes = Buffer.from(text, "utf8");
    stream();
    for (let i = 0; i < bytes.length; i += 5) {
      response.write(bytes.subarray(i, i + 5));
      await sleep(2);
    }
    response.end();
  } else if (body.message.startsWith("fails mid-stream")) {
    stream();
    if (attempt === 1) {
      response.write(sse("citations", { citations: [FAKE_CITATION] }));
      response.write(sse("delta", { text: "The first half of" }));
      await sleep(100);
      response.end(sse("error", { error: { code: "upstream_error", message: "The model provider failed." } }));
    } else {
      response.write(sse("citations", { citations: [FAKE_CITATION] }));
      response.end(sse("delta", { text: FAKE_ANSWER }) + sse("done", done));
    }
  } else if (body.message.startsWith("too many")) {
    json(429, { error: { code: "rate_limited", message: "Slow down." } }, { "Retry-After": "7" });
  } else if (body.message.startsWith("server error")) {
    json(503, { error: { code: "internal", message: "Something broke." } });
  } else if (body.message.startsWith("drop")) {
    request.socket.destroy();
  } else if (body.message.startsWith("slow")) {
    stream();
    response.write(sse("citations", { citations: [FAKE_CITATION] }));
    for (let i = 0; i < 100 && !response.destroyed; i++) {
      response.write(sse("delta", { text: `word${i} ` }));
      await sleep(100);
    }
    response.end();
  } else {
    stream();
    response.write(sse("citations", { citations: [FAKE_CITATION] }));
    response.end(sse("delta", { text: FAKE_ANSWER }) + sse("done", done));
  }
}

const HOSTILE_CSS =
  "* { all: unset } button { background: red !important; font-size: 40px !important } div { padding: 50px !important }";

/** The course site that embeds the widget, on an origin of its own. */
function hostPage(hostile) {
  const blocks = sections
    .map(
      (section, i) => `
<section style="display:block;min-height:1400px">
  <h2 id="${section.id}">${escapeHtml(section.title)}</h2>
  <p>Text of section ${i + 1} of the lesson.</p>
</section>`,
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host page</title>
<style>body { font: 16px/1.5 Georgia, serif; margin: 2rem } ${hostile ? HOSTILE_CSS : ""}</style>
</head><body><main>
<h1>Choosing a deployment</h1>
<section style="display:block;min-height:1200px"><p>Introduction.</p></section>
${blocks}
</main>
<script src="${tutorOrigin}/widget.js" data-lesson="${LESSON}" defer></script>
</body></html>`;
}

/** A host page placing the widget inline: inside a named element, or where its script tag is. */
function inlinePage(target, lang) {
  const tag = `<script src="${tutorOrigin}/widget.js" data-lesson="${LESSON}" data-placement="inline"${target ? ' data-target="ask-here"' : ""} defer></script>`;
  return `<!doctype html>
<html lang="${/^[A-Za-z-]{2,10}$/.test(lang || "") ? lang : "en"}"><head><meta charset="utf-8"><title>Inline host page</title></head><body>
<main><h1>Choosing a deployment</h1><p class="before">The lesson's text.</p>
${target ? "" : tag}
<p class="after">More of the lesson.</p>
<section id="ask-here" aria-label="Questions"></section></main>
${target ? tag : ""}
</body></html>`;
}

/** A page whose widget talks to the scripted API, with every option set (a session token
 * from an LMS launch instead of a key when `token` is given). */
function fakeApiPage(token) {
  const credential = token ? `data-token="${token}"` : 'data-key="k-123"';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scripted API</title>
<style>:root { --tutor-accent: #7a1fa2; --tutor-accent-fg: #ffffff }</style></head>
<body><main><h1>Cafés</h1><p>No section of this page carries a citation's id.</p></main>
<script src="/widget.js" data-lesson="fake-lesson" data-api="${hostOrigin}/fake" ${credential}
  data-title="Questions about cafés" data-placement="left" data-open="true" defer></script>
</body></html>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function hostServer() {
  return http.createServer((request, response) => {
    const url = new URL(request.url, "http://host");
    if (url.pathname === "/fake/v1/feedback") {
      readBody(request).then((body) => {
        fakeFeedbackRequests.push({ headers: request.headers, body: JSON.parse(body) });
        response.writeHead(503, { "Content-Type": "application/json" });
        response.end(JSON.stringify({ error: { code: "internal", message: "The feedback store is down." } }));
      });
      return;
    }
    if (url.pathname.startsWith("/fake/v1/chat")) {
      fakeTutorApi(request, response).catch(() => response.destroy());
      return;
    }
    if (url.pathname === "/widget.js") {
      response.writeHead(200, { "Content-Type": "text/javascript" });
      // As the server serves it: the table of words put in.
      response.end(readFileSync(widgetPath, "utf8").replace("/*STRINGS*/{}", readFileSync(stringsPath, "utf8")));
      return;
    }
    const page =
      url.pathname === "/fake"
        ? fakeApiPage(url.searchParams.get("token"))
        : url.pathname === "/"
          ? hostPage(url.searchParams.has("hostile"))
          : url.pathname === "/inline"
            ? inlinePage(url.searchParams.has("target"), url.searchParams.get("lang"))
            : null;
    response.writeHead(page ? 200 : 404, { "Content-Type": "text/html; charset=utf-8" });
    response.end(page || "not found");
  });
}

async function startTutor(modelPort, hostPort) {
  const port = await freePort();
  indexDir = mkdtempSync(path.join(tmpdir(), "tutor-browser-index-"));
  tutor = await runTutor(
    TUTOR_BIN,
    port,
    ["--lessons", TUTOR_LESSONS, "--index", indexDir, "serve", "--addr", `127.0.0.1:${port}`],
    {
      env: {
        ...process.env,
        OPENAI_BASE_URL: `http://127.0.0.1:${modelPort}/v1`,
        OPENAI_API_KEY: "test",
        TUTOR_MODEL: "fake-model",
        TUTOR_CORS_ORIGINS: `http://127.0.0.1:${hostPort}`,
      },
    },
  );
  return tutor.origin;
}

before(async () => {
  assert.ok(TUTOR_BIN, "TUTOR_BIN must name the tutor binary");
  mkdirSync(screenshotDir, { recursive: true });
  const modelPort = await listen(fakeModel());
  const hostPort = await listen(hostServer());
  hostOrigin = `http://127.0.0.1:${hostPort}`;
  tutorOrigin = await startTutor(modelPort, hostPort);
  const lesson = await (await fetch(`${tutorOrigin}/v1/lessons/${LESSON}`)).json();
  sections = lesson.sections;
  assert.ok(sections.length >= 2, `lesson ${LESSON} should have sections: ${JSON.stringify(lesson)}`);
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (tutor) await tutor.stop();
  for (const server of servers) {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
  if (indexDir) rmSync(indexDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------
// Helpers that look into the widget's shadow root (Playwright's CSS locators pierce open ones).

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error("page error:", error.message));
  return page;
}

const widget = (page, selector) => page.locator("lesson-tutor").locator(selector);

async function openWidget(page) {
  await widget(page, ".panel").waitFor({ state: "attached" });
  // Inline (the tutor's own lesson pages): always open, nothing to press.
  if (await widget(page, ".root.inline").count()) {
    return widget(page, ".panel").waitFor({ state: "visible" });
  }
  if ((await widget(page, ".launcher").getAttribute("aria-expanded")) !== "true") {
    await widget(page, ".launcher").click();
  }
  await widget(page, ".panel").waitFor({ state: "visible" });
  // Let the opening animation finish, so styles and contrast are measured at rest.
  await widget(page, ".panel").evaluate((panel) => Promise.all(panel.getAnimations().map((a) => a.finished)));
}

/** Number of finished assistant messages and error notes in the log. */
function finishedCount(page) {
  return page.evaluate(() => {
    const root = document.querySelector("lesson-tutor").shadowRoot;
    return root.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length;
  });
}

/** Types a question, sends it with Enter and waits for the answer (or an error note). */
async function ask(page, question) {
  const before = await finishedCount(page);
  await widget(page, "textarea").fill(question);
  await widget(page, "textarea").press("Enter");
  await page.waitForFunction(
    (count) =>
      document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error")
        .length > count,
    before,
    { timeout: 30_000 },
  );
}

/** The last message of the log, as the learner sees it. */
function lastMessage(page) {
  return page.evaluate(() => {
    const root = document.querySelector("lesson-tutor").shadowRoot;
    const node = [...root.querySelectorAll(".msg")].pop();
    return node && { className: node.className, text: node.textContent, html: node.innerHTML };
  });
}

// ------------------------------------------------------------------------------------------------
// The real server, embedded on another origin.

let conversationPage = null;

test("an answer streams in, cites the lesson, and its citation jumps to the host page's section", { timeout: 60_000 }, async () => {
  const page = (conversationPage = await newPage());
  await page.goto(`${hostOrigin}/`);
  await openWidget(page);
  assert.equal(await page.evaluate(() => window.scrollY), 0);

  await widget(page, "textarea").fill("Which deployment should I start with?");
  await widget(page, "textarea").press("Enter");

  // Sample the growing answer until it is finished.
  const states = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const sample = await page.evaluate(() => {
      const root = document.querySelector("lesson-tutor").shadowRoot;
      const node = [...root.querySelectorAll(".msg.assistant")].pop();
      return node ? { streaming: node.classList.contains("streaming"), text: node.querySelector(".bubble").textContent } : null;
    });
    if (sample && !sample.streaming) break;
    if (sample && sample.text.trim() && states.at(-1) !== sample.text) states.push(sample.text);
    assert.ok(Date.now() < deadline, "the answer never finished");
    await sleep(25);
  }
  assert.ok(states.length >= 2, `expected the answer to grow in steps, saw ${JSON.stringify(states)}`);
  for (let i = 1; i < states.length; i++) {
    assert.ok(states[i].startsWith(states[i - 1].trimEnd()), `text should only grow: ${JSON.stringify(states)}`);
  }
  // Verified sentence by sentence: the invented one never reached the page, not even briefly.
  for (const state of states) assert.doesNotMatch(state, INVENTED, `shown: ${state}`);
  assert.ok(modelRequests.length >= 1, "the fake model was never asked");

  const final = await lastMessage(page);
  assert.match(final.className, /assistant/);
  assert.doesNotMatch(final.className, /refusal/);
  assert.match(final.text, /start with a closed API/);
  assert.doesNotMatch(final.text, INVENTED);
  assert.match(final.text, /Sources:/);
  const cite = widget(page, ".msg.assistant:not(.streaming) .cite").first();
  await cite.waitFor();
  // Shown citation numbers count from [1] in order of first appearance, with no gap.
  const labels = await widget(page, ".msg.assistant:not(.streaming) .bubble .cite").allTextContents();
  const firsts = [...new Set(labels.map((label) => Number(label.replace(/\D/g, ""))))];
  assert.deepEqual(firsts, firsts.map((_, i) => i + 1), `citation buttons: ${JSON.stringify(labels)}`);

  // Which section does it point at? The citation knows; the host page has that id.
  await cite.click();
  await page.waitForFunction(() => window.scrollY > 0, null, { timeout: 5000 });
  const highlighted = await page.evaluate(() => {
    const node = document.querySelector("[data-tutor-highlight]");
    return node && node.id;
  });
  assert.ok(
    sections.some((s) => s.id === highlighted),
    `a lesson section should be highlighted, got ${highlighted}`,
  );
  const rule = await page.evaluate(() => document.getElementById("tutor-highlight-style")?.textContent || "");
  assert.match(rule, /\[data-tutor-highlight\]/);
  await page.waitForFunction(() => !document.querySelector("[data-tutor-highlight]"), null, { timeout: 4000 });
});

/** A page whose widget holds one finished question and answer (the first scenario's, or a
 * fresh one when this scenario runs alone). */
async function pageWithConversation() {
  if (conversationPage) return conversationPage;
  const page = await newPage();
  await page.goto(`${hostOrigin}/`);
  await openWidget(page);
  await widget(page, "textarea").fill("Which deployment should I start with?");
  await widget(page, "textarea").press("Enter");
  await widget(page, ".msg.assistant:not(.streaming) .cite").first().waitFor({ timeout: 30_000 });
  return page;
}

test("a reload keeps the conversation, and Clear empties it", { timeout: 60_000 }, async () => {
  const page = await pageWithConversation();
  const key = `tutor:conversation:${LESSON}`;
  const saved = JSON.parse(await page.evaluate((k) => localStorage.getItem(k), key));
  assert.equal(saved.length, 2);
  assert.deepEqual(
    saved.map((m) => m.role),
    ["user", "assistant"],
  );
  assert.ok(saved[1].citations.length >= 1);

  await page.reload();
  await openWidget(page);
  const restored = await page.evaluate(() =>
    [...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg")].map((n) => n.className),
  );
  assert.equal(restored.length, 2, `restored ${JSON.stringify(restored)}`);
  assert.equal(await widget(page, ".msg.user").textContent(), "Which deployment should I start with?");
  assert.ok((await widget(page, ".msg.assistant .cite").count()) >= 1);

  // A follow-up carries the earlier turns as history.
  const request = page.waitForRequest((r) => r.method() === "POST" && r.url() === `${tutorOrigin}/v1/chat`);
  await ask(page, "And after that?");
  const sent = JSON.parse((await request).postData());
  assert.deepEqual(
    sent.history.map((m) => m.role),
    ["user", "assistant"],
  );
  assert.equal(sent.history[0].content, "Which deployment should I start with?");
  assert.equal(sent.history[1].content, saved[1].content);

  await widget(page, ".clear").click();
  assert.equal(await widget(page, ".msg").count(), 0);
  assert.equal(await page.evaluate((k) => localStorage.getItem(k), key), null);
  await page.reload();
  await openWidget(page);
  assert.equal(await widget(page, ".msg").count(), 0);
  await page.context().close();
});

test("an off-topic question is refused, visibly, without asking the model", { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/`);
  await openWidget(page);
  const asked = modelRequests.length;
  await ask(page, OFF_TOPIC);
  const message = await lastMessage(page);
  assert.match(message.className, /\brefusal\b/, `expected a refusal, got ${message.text}`);
  assert.equal(await widget(page, ".msg.refusal .cite").count(), 0);
  assert.equal(await widget(page, ".msg.refusal svg").count(), 1, "a refusal shows its info icon");
  const reachedModel = modelRequests.slice(asked).some((r) => JSON.stringify(r).includes("sourdough"));
  assert.equal(reachedModel, false, "retrieval found nothing, so no model should be called");
  await page.context().close();
});

test("an answer is rated by keyboard, with a comment, and the rating outlives a reload", { timeout: 60_000 }, async () => {
  const page = await newPage({ deviceScaleFactor: 2 });
  await page.goto(`${hostOrigin}/`);
  await openWidget(page);
  const key = `tutor:conversation:${LESSON}`;
  const chat = () => page.waitForRequest((r) => r.method() === "POST" && r.url() === `${tutorOrigin}/v1/chat`);
  const feedback = () =>
    page.waitForResponse((r) => r.request().method() === "POST" && r.url() === `${tutorOrigin}/v1/feedback`);
  const active = () => page.evaluate(() => document.querySelector("lesson-tutor").shadowRoot.activeElement?.className);

  let request = chat();
  await ask(page, "Which deployment should I start with?");
  const { conversation_id } = JSON.parse((await request).postData());
  assert.match(conversation_id, /^[A-Za-z0-9_-]{1,64}$/, "an anonymous conversation id is sent");
  assert.equal(await page.evaluate((k) => localStorage.getItem(k), `${key}:id`), conversation_id, "kept beside it");
  const [, answer] = JSON.parse(await page.evaluate((k) => localStorage.getItem(k), key));
  assert.equal(typeof answer.answer_id, "string");

  const up = widget(page, ".msg.assistant .thumb.up");
  const down = widget(page, ".msg.assistant .thumb.down");
  assert.equal(await up.getAttribute("aria-label"), "This answer helped");
  assert.equal(await down.getAttribute("aria-label"), "This answer did not help");
  assert.deepEqual([await up.getAttribute("aria-pressed"), await down.getAttribute("aria-pressed")], ["false", "false"]);

  // Thumbs down, by keyboard: sent, pressed, and a comment box opens after it.
  let response = feedback();
  await down.focus();
  await page.keyboard.press("Enter");
  response = await response;
  assert.equal(response.status(), 200);
  assert.deepEqual(JSON.parse(response.request().postData()), { answer_id: answer.answer_id, rating: "down" });
  assert.deepEqual([await up.getAttribute("aria-pressed"), await down.getAttribute("aria-pressed")], ["false", "true"]);
  const comment = widget(page, ".comment input");
  await comment.waitFor();
  assert.equal(await comment.getAttribute("maxlength"), "500");
  assert.equal(await widget(page, ".comment label").textContent(), "What was missing? (optional)");
  for (const colorScheme of ["dark", "light"]) {
    await page.emulateMedia({ colorScheme });
    assert.deepEqual(await axeViolations(page), [], `the widget with its feedback controls (${colorScheme})`);
  }
  await widget(page, ".panel").screenshot({ path: path.join(screenshotDir, "widget-feedback.png") });

  // Tab reaches the comment, and again its Send button.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.querySelector("lesson-tutor").shadowRoot.activeElement?.localName), "input");
  await page.keyboard.type("It did not say what the costs are.");
  await page.keyboard.press("Tab");
  response = feedback();
  await page.keyboard.press("Space");
  response = await response;
  assert.equal(response.status(), 200);
  assert.deepEqual(JSON.parse(response.request().postData()), {
    answer_id: answer.answer_id,
    rating: "down",
    comment: "It did not say what the costs are.",
  });
  await widget(page, ".fb").getByText("Thanks for the feedback").waitFor();
  assert.equal(await comment.isVisible(), false);
  assert.equal(await active(), "thumb down", "focus goes back to the thumb, not lost with the box");

  // After a reload the rating still shows; Esc closes the comment box first, then the panel.
  await page.reload();
  await openWidget(page);
  assert.deepEqual([await up.getAttribute("aria-pressed"), await down.getAttribute("aria-pressed")], ["false", "true"]);
  assert.equal(JSON.parse(await page.evaluate((k) => localStorage.getItem(k), key))[1].rating, "down");
  response = feedback();
  await down.press("Enter");
  assert.equal((await response).status(), 200);
  await comment.press("Escape");
  await comment.waitFor({ state: "hidden" });
  assert.ok(await widget(page, ".panel").isVisible(), "the first Esc only closes the comment box");
  assert.equal(await active(), "thumb down");
  await page.keyboard.press("Escape");
  await widget(page, ".panel").waitFor({ state: "hidden" });
  assert.equal(await active(), "launcher");

  // Thumbs up replaces the rating.
  await openWidget(page);
  response = feedback();
  await up.click();
  assert.equal((await response).status(), 200);
  assert.deepEqual([await up.getAttribute("aria-pressed"), await down.getAttribute("aria-pressed")], ["true", "false"]);

  // Clear starts a new conversation, with a new id.
  await widget(page, ".clear").click();
  request = chat();
  await ask(page, "Which deployment should I start with?");
  const next = JSON.parse((await request).postData()).conversation_id;
  assert.match(next, /^[A-Za-z0-9_-]{1,64}$/);
  assert.notEqual(next, conversation_id);
  await page.context().close();
});

test("the widget works by keyboard alone", { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/`);
  await widget(page, ".launcher").waitFor();
  const focusedInWidget = () =>
    page.evaluate(() => {
      const host = document.querySelector("lesson-tutor");
      return document.activeElement === host ? host.shadowRoot.activeElement?.className || host.shadowRoot.activeElement?.tagName : null;
    });
  let focused = null;
  for (let i = 0; i < 20 && focused !== "launcher"; i++) {
    await page.keyboard.press("Tab");
    focused = await focusedInWidget();
  }
  assert.equal(focused, "launcher", "Tab should reach the launcher");
  await page.keyboard.press("Enter");
  await widget(page, ".panel").waitFor({ state: "visible" });
  assert.equal(await widget(page, ".launcher").getAttribute("aria-expanded"), "true");
  assert.equal(await focusedInWidget(), "TEXTAREA", "opening moves focus to the question box");

  await page.keyboard.type("What is the cheapest way to deploy?");
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    () => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > 0,
    null,
    { timeout: 30_000 },
  );
  assert.equal(await widget(page, ".msg.user").textContent(), "What is the cheapest way to deploy?");

  await page.keyboard.press("Escape");
  await widget(page, ".panel").waitFor({ state: "hidden" });
  assert.equal(await focusedInWidget(), "launcher", "Esc returns focus to the launcher");
  assert.equal(await widget(page, ".launcher").getAttribute("aria-expanded"), "false");
  await page.context().close();
});

test("hostile host CSS changes nothing in the widget", { timeout: 30_000 }, async () => {
  const snapshot = async (url) => {
    const page = await newPage({ reducedMotion: "reduce" });
    await page.goto(url);
    await openWidget(page);
    const styles = await page.evaluate(() => {
      const root = document.querySelector("lesson-tutor").shadowRoot;
      const out = {};
      for (const selector of [".launcher", ".panel", "h2", "textarea", ".send", ".clear"]) {
        const style = getComputedStyle(root.querySelector(selector));
        const props = {};
        for (let i = 0; i < style.length; i++) props[style[i]] = style.getPropertyValue(style[i]);
        out[selector] = props;
      }
      return out;
    });
    await page.context().close();
    return styles;
  };
  const plain = await snapshot(`${hostOrigin}/`);
  const hostile = await snapshot(`${hostOrigin}/?hostile=1`);
  for (const selector of Object.keys(plain)) {
    const differences = Object.keys(plain[selector])
      .filter((prop) => plain[selector][prop] !== hostile[selector][prop])
      .map((prop) => `${prop}: ${plain[selector][prop]} vs ${hostile[selector][prop]}`);
    assert.deepEqual(differences, [], `${selector} differs under hostile CSS`);
  }
});

test("the open widget and the lesson page have no serious accessibility violations", { timeout: 90_000 }, async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await newPage({ colorScheme });
    await page.goto(`${hostOrigin}/`);
    await openWidget(page);
    await ask(page, "Which deployment should I start with?");
    await ask(page, OFF_TOPIC);
    assert.deepEqual(await axeViolations(page), [], `widget on the host page (${colorScheme})`);
    await page.context().close();

    const lessonPage = await newPage({ colorScheme });
    await lessonPage.goto(`${tutorOrigin}/lessons/${LESSON}`);
    assert.deepEqual(await axeViolations(lessonPage), [], `lesson page (${colorScheme})`);
    await openWidget(lessonPage);
    assert.deepEqual(await axeViolations(lessonPage), [], `lesson page with the widget open (${colorScheme})`);
    await lessonPage.goto(`${tutorOrigin}/`);
    assert.deepEqual(await axeViolations(lessonPage), [], `catalog (${colorScheme})`);
    await lessonPage.context().close();
  }
});

test("the lesson page is served with its sections and the widget", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(`${tutorOrigin}/lessons/${LESSON}`);
  assert.equal(await page.locator("h1").count(), 1);
  assert.equal(await page.locator("main").count(), 1);
  assert.equal(await page.getAttribute("html", "lang"), "en");
  assert.equal(await page.getAttribute("article", "lang"), "en", "the lesson's own language");
  assert.equal(await page.getAttribute("script[data-lesson]", "data-lang"), "en", "the widget speaks it");
  for (const section of sections) {
    assert.equal(await page.locator(`[id="${section.id}"]`).count(), 1, `section ${section.id} has its anchor`);
  }
  await widget(page, ".panel").waitFor({ state: "visible" });
  await page.screenshot({ path: path.join(screenshotDir, "lesson-page.png") });

  // The catalog links here.
  await page.goto(`${tutorOrigin}/`);
  assert.equal(await page.locator(`a[href="/lessons/${LESSON}"]`).count(), 1);
  await page.context().close();
});

test("screenshots of the widget on a phone and on a desktop", { timeout: 60_000 }, async () => {
  const shots = [
    ["widget-mobile.png", { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }],
    ["widget-desktop.png", { viewport: { width: 1280, height: 800 } }],
  ];
  for (const [file, options] of shots) {
    const page = await newPage({ ...options, reducedMotion: "reduce" });
    // A host page's floating widget.
    await page.goto(`${hostOrigin}/`);
    await openWidget(page);
    await ask(page, "Which deployment should I start with?");
    await ask(page, OFF_TOPIC);
    if (options.isMobile) {
      const box = await widget(page, ".panel").boundingBox();
      assert.deepEqual(box, { x: 0, y: 0, width: 390, height: 844 }, "the open panel fills a phone's screen");
    }
    await page.screenshot({ path: path.join(screenshotDir, file) });
    await page.context().close();
  }
});

test("a host page places the tutor inline, in a named element or where its script is", { timeout: 30_000 }, async () => {
  for (const target of [true, false]) {
    const page = await newPage();
    await page.goto(`${hostOrigin}/inline${target ? "?target" : ""}`);
    await widget(page, ".panel").waitFor({ state: "visible" });
    const place = await page.evaluate(() => {
      const tutor = document.querySelector("lesson-tutor");
      return {
        parent: tutor.parentElement.id || tutor.parentElement.tagName,
        previous: tutor.previousElementSibling?.tagName,
        next: tutor.nextElementSibling?.className,
      };
    });
    if (target) assert.equal(place.parent, "ask-here", "inside the named element");
    else assert.deepEqual([place.parent, place.previous, place.next], ["MAIN", "SCRIPT", "after"], "where the script is");
    assert.equal(await widget(page, ".launcher").isVisible(), false, "no launcher");
    assert.equal(await widget(page, ".panel").getAttribute("role"), "region");
    // Escape leaves an inline tutor open; it still answers.
    await widget(page, "textarea").press("Escape");
    assert.equal(await widget(page, ".panel").isVisible(), true);
    await ask(page, "Which deployment should I start with?");
    assert.match((await lastMessage(page)).className, /assistant/);
    assert.deepEqual(await axeViolations(page), [], `inline host page (${target ? "named element" : "script"})`);
    await page.context().close();
  }
});

test("the widget speaks the page's language, every word of it", { timeout: 60_000 }, async () => {
  const expected = JSON.parse(readFileSync(stringsPath, "utf8"));
  for (const lang of ["es", "de", "fr", "pt-BR", "it", "ja"]) {
    const words = expected[lang.split("-")[0]] || expected.en;
    const page = await newPage();
    await page.goto(`${hostOrigin}/inline?target&lang=${lang}`);
    await widget(page, ".panel").waitFor({ state: "visible" });
    const shown = await page.evaluate(() => {
      const root = document.querySelector("lesson-tutor").shadowRoot;
      const text = (selector) => root.querySelector(selector).textContent.trim();
      return {
        lang: root.querySelector(".root").lang,
        title: text("h2"),
        label: text("label"),
        placeholder: root.querySelector("textarea").placeholder,
        keys: text(".row .hint"),
        send: text(".send"),
        hint: text(".ask-hint"),
        hintTitle: root.querySelector(".ask-hint").title,
        quiz: text(".ask-quiz"),
        clear: text(".clear"),
        intro: text(".intro"),
      };
    });
    assert.deepEqual(shown, {
      lang: expected[lang.split("-")[0]] ? lang.split("-")[0] : "en",
      title: words.title,
      label: words.label_question,
      placeholder: words.placeholder,
      keys: words.keys,
      send: words.send,
      hint: words.hint,
      hintTitle: words.hint_title,
      quiz: words.quiz,
      clear: words.clear,
      intro: words.intro,
    }, lang);
    // Hint with nothing typed: what to do, on screen, in the same language.
    await widget(page, ".ask-hint").click();
    assert.equal(await widget(page, ".nudge").textContent(), words.nudge, lang);
    if (lang === "es") {
      // An answer's sources and rating in the same language.
      await ask(page, "Which deployment should I start with?");
      const last = await lastMessage(page);
      assert.match(last.text, new RegExp(words.sources), last.text);
      assert.match(last.text, new RegExp(words.helpful.replace("?", "\\?")), last.text);
      assert.deepEqual(await axeViolations(page), [], "a Spanish page");
    }
    await page.context().close();
  }
});

test("on lesson pages the tutor sits beside the text or after it, and never covers it", { timeout: 90_000 }, async () => {
  for (const width of [390, 1024, 1280, 1440]) {
    const page = await newPage({ viewport: { width, height: 900 }, reducedMotion: "reduce" });
    await page.goto(`${tutorOrigin}/lessons/${LESSON}`);
    await openWidget(page);
    await ask(page, "Which deployment should I start with?");
    const boxes = await page.evaluate(() => {
      const box = (node) => {
        const r = node.getBoundingClientRect();
        return { left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY };
      };
      const tutor = document.querySelector("lesson-tutor");
      const panel = tutor.shadowRoot.querySelector(".panel");
      // What shows of an element: its box, clipped by a region that scrolls it sideways.
      const shown = (node) => {
        const b = box(node);
        const clip = node.closest(".scroll");
        if (!clip) return b;
        const c = box(clip);
        return { left: Math.max(b.left, c.left), top: b.top, right: Math.min(b.right, c.right), bottom: b.bottom };
      };
      const text = [...document.querySelectorAll("article :is(h1, h2, h3, p, li, th, td, blockquote, pre)")]
        .filter((node) => node.getClientRects().length)
        .map((node) => ({ what: `${node.tagName} ${node.textContent.slice(0, 40)}`, ...shown(node) }));
      return { panel: box(panel), article: box(document.querySelector("article")), text, page: document.documentElement.scrollWidth };
    });
    const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    const covered = boxes.text.filter((t) => overlaps(t, boxes.panel)).map((t) => t.what);
    assert.deepEqual(covered, [], `lesson text under the tutor at ${width} px`);
    assert.ok(boxes.panel.bottom - boxes.panel.top > 300, `the tutor has room at ${width} px`);
    assert.ok(boxes.page <= width, `nothing scrolls sideways at ${width} px (${boxes.page})`);
    if (width >= 1024) {
      assert.ok(boxes.panel.left >= boxes.article.right, `a column beside the text at ${width} px`);
      assert.ok(boxes.article.right - boxes.article.left >= 560, `the text keeps a readable width at ${width} px`);
    } else {
      assert.ok(boxes.panel.top >= boxes.article.bottom, `a section after the text at ${width} px`);
    }
    // Scrolled to the end of the lesson's text, a column beside it is still in view.
    if (width >= 1024) {
      await page.evaluate(() => document.querySelector("article .lesson-body > :last-child").scrollIntoView({ block: "end" }));
      const inView = await widget(page, ".panel").evaluate((panel) => {
        const r = panel.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= innerHeight;
      });
      assert.ok(inView, `the tutor is in view at the end of the lesson at ${width} px`);
    }
    assert.deepEqual(await axeViolations(page), [], `lesson page with the tutor at ${width} px`);
    await page.screenshot({ path: path.join(screenshotDir, `lesson-page-${width}.png`), fullPage: width === 1280 });
    await page.context().close();
  }
});

// ------------------------------------------------------------------------------------------------
// The scripted API: what the real server cannot be made to do on demand.

test("events split across network chunks, CRLF lines and keep-alives still make one answer", { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/fake`);
  await widget(page, ".panel").waitFor({ state: "visible" }); // data-open="true"
  assert.equal(await widget(page, ".panel").getAttribute("aria-label"), "Questions about cafés");
  assert.equal(await widget(page, "h2").textContent(), "Questions about cafés");
  const launcherLeft = await widget(page, ".launcher").evaluate((n) => getComputedStyle(n).left);
  assert.equal(launcherLeft, "20px", "data-placement=left");
  const launcherColours = await widget(page, ".launcher").evaluate((n) => {
    const style = getComputedStyle(n);
    return [style.backgroundColor, style.color];
  });
  assert.deepEqual(launcherColours, ["rgb(122, 31, 162)", "rgb(255, 255, 255)"], "the page's --tutor-accent themes it");

  for (const question of ["split please", "split crlf please"]) {
    await ask(page, question);
    const message = await lastMessage(page);
    assert.match(message.className, /assistant/);
    assert.equal(
      await page.evaluate(() => {
        const node = [...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant")].pop();
        return node.querySelector(".bubble").textContent;
      }),
      "A café crème is a long espresso [1].hot waterespresso",
    );
    const last = widget(page, ".msg.assistant").last();
    assert.equal(await last.locator("strong").textContent(), "café crème");
    assert.equal(await last.locator("em").textContent(), "espresso");
    assert.equal(await last.locator(".bubble li").count(), 2);
    assert.equal(await last.locator(".bubble li code").textContent(), "espresso");
  }
  const [first] = fakeApiRequests.filter((r) => r.body.message === "split please");
  assert.equal(first.headers["x-tutor-key"], "k-123");
  assert.equal(first.headers.accept, "text/event-stream");
  assert.deepEqual(first.body.history, []);
  assert.equal(first.body.stream, true);
  assert.equal(first.body.lesson_id, "fake-lesson");
  const [second] = fakeApiRequests.filter((r) => r.body.message === "split crlf please");
  assert.deepEqual(
    second.body.history.map((m) => m.role),
    ["user", "assistant"],
  );

  // No section with the citation's id on this page: the quote opens inside the panel.
  await widget(page, ".msg.assistant .cite").last().click();
  const quote = widget(page, ".msg.assistant").last().locator("details.quote");
  assert.equal(await quote.getAttribute("open"), "");
  assert.equal(await quote.locator("blockquote").textContent(), FAKE_CITATION.text);
  await page.context().close();
});

test("failures show a friendly message with Retry, and never a dead panel", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/fake`);
  await widget(page, ".panel").waitFor({ state: "visible" });

  // An error after the stream began: the partial answer stays, marked incomplete.
  await ask(page, "fails mid-stream");
  const texts = await page.evaluate(() =>
    [...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg")].map((n) => n.textContent),
  );
  assert.match(texts.at(-2), /The first half of/);
  assert.match(texts.at(-2), /incomplete/i);
  assert.match(texts.at(-1), /stopped before finishing/);
  await widget(page, ".msg.error button").click();
  await page.waitForFunction(
    () => document.querySelector("lesson-tutor").shadowRoot.querySelector(".msg.assistant:last-child:not(.streaming) .cite"),
  );
  assert.equal(await widget(page, ".msg.error").count(), 0);
  assert.equal(await widget(page, ".msg.assistant").count(), 1, "the retried answer replaces the partial one");

  await ask(page, "too many questions");
  assert.match((await lastMessage(page)).text, /Too many questions right now, try again in 7 s/);
  assert.equal(await widget(page, ".msg.error button").textContent(), "Retry");

  await ask(page, "server error please");
  assert.match((await lastMessage(page)).text, /couldn't answer just now/);
  assert.equal(await widget(page, ".msg.error").last().locator("button").textContent(), "Retry");

  await ask(page, "drop the connection");
  assert.match((await lastMessage(page)).text, /Couldn't reach the tutor/);

  // Stop while streaming: the words so far stay, Send comes back.
  await widget(page, "textarea").fill("slow answer");
  await widget(page, "textarea").press("Enter");
  await page.waitForFunction(() =>
    /word3/.test(document.querySelector("lesson-tutor").shadowRoot.querySelector(".msg.streaming")?.textContent || ""),
  );
  assert.ok(await widget(page, ".stop").isVisible());
  await widget(page, ".stop").click();
  await widget(page, ".send").waitFor({ state: "visible" });
  assert.equal(await widget(page, ".stop").isVisible(), false);
  const stopped = await lastMessage(page);
  assert.match(stopped.text, /word0/);
  assert.match(stopped.text, /incomplete/i);

  // The panel still works after all that.
  await ask(page, "a normal question");
  assert.match((await lastMessage(page)).text, /café crème/);
  await page.context().close();
});

test("feedback that cannot be sent says so, and the panel goes on working", { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/fake`);
  await widget(page, ".panel").waitFor({ state: "visible" });
  await ask(page, "rate this one");
  const up = widget(page, ".msg.assistant .thumb.up").last();
  await up.click();
  await widget(page, ".fb").last().getByText("Could not send feedback").waitFor();
  assert.equal(await up.getAttribute("aria-pressed"), "false", "a rating that was not recorded is not shown");
  const sent = fakeFeedbackRequests.at(-1);
  assert.equal(sent.headers["x-tutor-key"], "k-123");
  const saved = JSON.parse(await page.evaluate(() => localStorage.getItem("tutor:conversation:fake-lesson")));
  assert.deepEqual(sent.body, { answer_id: saved.at(-1).answer_id, rating: "up" });
  assert.equal(saved.at(-1).rating, undefined, "nor kept");
  assert.equal(fakeApiRequests.at(-1).headers["x-tutor-key"], "k-123");
  assert.match(fakeApiRequests.at(-1).body.conversation_id, /^[A-Za-z0-9_-]{1,64}$/);

  await ask(page, "a normal question");
  assert.match((await lastMessage(page)).text, /café crème/);
  await page.context().close();
});

test("Quiz me and Hint work by keyboard, grade the reply, keep the score, and pass axe", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/`);
  await openWidget(page);
  const asked = modelRequests.length;
  const count = () => finishedCount(page);

  // "Quiz me" by keyboard: the lesson's first quiz item is asked, the box now takes the reply.
  let before = await count();
  await widget(page, ".ask-quiz").focus();
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > n, before);
  let last = await lastMessage(page);
  assert.match(last.text, /Quiz time!/);
  assert.match(last.text, /comparison table/, last.text);
  const choices = await page.evaluate(() =>
    [...[...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant")].pop()
      .querySelectorAll("ol[type=a] > li")].map((li) => li.textContent));
  assert.deepEqual(choices, ["Closed API", "Hosted open weights", "Self-hosted open model", "Hybrid"],
    "the choices are a lettered list, one item each");
  assert.equal(modelRequests.length, asked, "a quiz question is asked without the model");
  assert.equal(await widget(page, "form label").textContent(), "Your answer to the quiz question");

  // The reply, sent with Enter, is graded; the score appears and is announced.
  before = await count();
  await widget(page, "textarea").fill("d");
  await widget(page, "textarea").press("Enter");
  await page.waitForFunction((n) => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > n, before);
  last = await lastMessage(page);
  assert.match(last.className, /graded/);
  assert.match(last.text, /That's right!/);
  assert.equal(await widget(page, ".score").textContent(), "Quiz score: 1 of 1");
  assert.equal(await widget(page, "form label").textContent(), "Your question");

  // The next question is another item; a wrong reply is "not yet", with the section cited.
  await widget(page, ".ask-quiz").click();
  await page.waitForFunction(() => /fastest route to frontier/.test([...document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant")].pop()?.textContent || ""));
  // Hint with nothing typed while the quiz question waits: a hint for it, and it still waits.
  before = await count();
  await widget(page, ".ask-hint").click();
  await page.waitForFunction((n) => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > n, before);
  last = await lastMessage(page);
  assert.match(last.text, /hint/i, last.text);
  assert.doesNotMatch(last.text.split("Sources:")[0], /closed API/i, "the hint does not give the answer away");
  assert.equal(await widget(page, "form label").textContent(), "Your answer to the quiz question");
  await ask(page, "a bigger GPU");
  last = await lastMessage(page);
  assert.match(last.text, /Not yet\./);
  assert.match(last.text, /Sources:/);
  // A first wrong reply: another go, the question again, no answer and no score yet.
  assert.match(last.text, /Have another go:.*fastest route to frontier/s, last.text);
  assert.doesNotMatch(last.text.split("Sources:")[0], /closed API/i, "the answer waits for the last try");
  assert.equal(await widget(page, ".score").textContent(), "Quiz score: 1 of 1");
  assert.equal(await widget(page, "form label").textContent(), "Your second try at the quiz question");
  // The second wrong reply is graded and counted; the lesson gives the answer.
  await ask(page, "a bigger GPU, surely");
  last = await lastMessage(page);
  assert.match(last.text, /Not yet\./);
  assert.doesNotMatch(last.text, /Have another go/);
  assert.match(last.text.split("Sources:")[0], /closed API/i, "the answer after the last try");
  assert.equal(await widget(page, ".score").textContent(), "Quiz score: 1 of 2");
  assert.equal(await widget(page, "form label").textContent(), "Your question");

  // Hint with nothing typed and no quiz question waiting: what to do, on screen.
  assert.equal(await widget(page, ".nudge").isVisible(), false);
  await widget(page, ".ask-hint").click();
  assert.match(await widget(page, ".nudge").textContent(), /Type your question in the box first/);
  assert.equal(await widget(page, ".nudge").isVisible(), true);
  await widget(page, "textarea").fill("x");
  assert.equal(await widget(page, ".nudge").isVisible(), false, "typing clears it");
  await widget(page, "textarea").fill("");

  // Hint: the question typed, then the Hint button by keyboard.
  before = await count();
  await widget(page, "textarea").fill("Which option has the lowest operations effort?");
  await widget(page, ".ask-hint").focus();
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("lesson-tutor").shadowRoot.querySelectorAll(".msg.assistant:not(.streaming), .msg.error").length > n, before);
  last = await lastMessage(page);
  assert.match(last.text, /hint/i);
  assert.match(last.text, /Sources:/);
  // With a model configured, grades and hints ask it too; its unreadable grade left the
  // tutor's own in place above.
  assert.ok(modelRequests.length > asked, "grades and hints asked the model");

  assert.deepEqual(await axeViolations(page), [], "widget with the quiz tools and a graded reply");

  // The score outlives a reload, like the conversation.
  await page.reload();
  await openWidget(page);
  assert.equal(await widget(page, ".score").textContent(), "Quiz score: 1 of 2");
  await page.context().close();
});

test("after an LMS launch the widget sends its session token, not a key", { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${hostOrigin}/fake?token=lti.session.token`);
  await widget(page, ".panel").waitFor({ state: "visible" });
  await ask(page, "a question from the LMS");
  assert.match((await lastMessage(page)).text, /café crème/);
  const sent = fakeApiRequests.at(-1);
  assert.equal(sent.headers.authorization, "Bearer lti.session.token");
  assert.equal(sent.headers["x-tutor-key"], undefined);
  await page.context().close();
});
