/*
 * tutor widget: an "Ask anything about this lesson" panel for any lesson page.
 *
 *   <script src="https://tutor.example.org/widget.js" data-lesson="LESSON_ID" defer></script>
 *
 * Options, as data-* on that tag: data-lesson (required); data-api (API base, default: this
 * script's origin); data-title; data-placement ("floating" or "right", the default: a launcher
 * at the bottom right opening a panel over the page; "left": the same on the left; "inline":
 * the panel always open, in the page's flow, inside the element whose id is data-target, or
 * else where the script tag is); data-open ("true" opens a floating panel on load); data-key (sent as X-Tutor-Key); data-token (a session token from an LMS
 * launch, sent as Authorization: Bearer); data-lang (the language of its words: en, es, fr,
 * de, pt or it; default: the nearest lang attribute, else English). Theme: --tutor-accent, --tutor-bg, --tutor-fg
 * (and --tutor-accent-fg) set on the host page pass into the shadow root.
 *
 * Everything lives in the open shadow root of one <lesson-tutor> element, so the host page's CSS
 * cannot reach it. Model and lesson text enters the DOM only as text nodes, never as HTML.
 * Answers can be rated (/v1/feedback); a conversation has an anonymous id, new after Clear.
 * "Hint" asks for a nudge instead of the answer; "Quiz me" asks one of the lesson's quiz
 * questions, and the next message is graded as the reply. The running score is kept in the
 * browser with the conversation.
 */
(() => {
"use strict";

const TAG = "lesson-tutor";
const HISTORY_MESSAGES = 6; // earlier messages sent with a follow-up question
const MAX_CHARS = 4000; // the API's limit on one message
const HIGHLIGHT_MS = 2000;
const MAX_COMMENT = 500; // the API's limit on a feedback comment
// Every word the widget shows or speaks, per language (assets/widget-strings.json, put here
// and checked by the server; each language has every key of "en").
const STRINGS = /*STRINGS*/{};

/** The widget's words for `lang` (its first part picks the table), English for the rest. */
function wordsFor(lang) {
  const primary = String(lang || "").toLowerCase().split("-")[0];
  return { ...(STRINGS.en || {}), ...(STRINGS[primary] || {}) };
}

/** `text` with each {name} replaced by `values[name]`. */
const fill = (text, values) => String(text).replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));

// Captured now: document.currentScript is null once this first run of the script is over.
const script = document.currentScript || document.querySelector('script[data-lesson][src*="widget.js"]');

/** Reads the options from a dataset: the script tag's, or the element's own. */
function readOptions(data, src) {
  const origin = src ? new URL(src, location.href).origin : location.origin;
  return {
    lesson: (data.lesson || "").trim(),
    api: (data.api || origin).replace(/\/+$/, ""),
    title: data.title || "",
    lang: data.lang || "",
    placement: ["left", "inline"].includes(data.placement) ? data.placement : "right",
    target: data.target || "",
    open: data.open === "true",
    key: data.key || "",
    token: data.token || "",
  };
}

/** A fresh anonymous conversation id: 32 random hex digits (works without HTTPS). */
const newConversationId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

const reducedMotion = () => matchMedia("(prefers-reduced-motion: reduce)").matches;
const scrollBehavior = () => (reducedMotion() ? "auto" : "smooth");

/** DOM builder: el("p", {class: "x"}, "text", node). Strings become text nodes, never HTML. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** An error worth showing the learner; `retry` says whether asking again may help. */
const failure = (message, retry) => Object.assign(new Error(message), { retry });

// Markdown subset: paragraphs, lists, **bold**, *italic*, `code` and [n] citation markers.
// Anything else stays literal text.

// Groups: 1 `code`, 2-3 **bold** or __bold__, 4-5 *italic* or _italic_, 6 markers [n] or [n, m].
const INLINE =
  /`([^`\n]+)`|\*\*(.+?)\*\*|__(.+?)__|\*(?![\s*])([^*\n]+?)\*|(?<!\w)_(?![\s_])([^_\n]+?)_(?!\w)|\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

/** Appends `text` to `parent` as inline nodes; `cite(n)` makes the node for marker [n]. */
function renderInline(parent, text, cite) {
  let last = 0;
  const wrap = (tag, inner) => {
    const node = el(tag);
    renderInline(node, inner, cite);
    parent.append(node);
  };
  for (const m of text.matchAll(INLINE)) {
    parent.append(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[1] != null) parent.append(el("code", null, m[1]));
    else if (m[2] != null || m[3] != null) wrap("strong", m[2] ?? m[3]);
    else if (m[4] != null || m[5] != null) wrap("em", m[4] ?? m[5]);
    else for (const n of m[6].split(/\s*,\s*/)) parent.append(cite(Number(n)));
  }
  parent.append(text.slice(last));
}

/** Renders `text` as paragraphs and lists into `parent`. */
function renderMarkdown(parent, text, cite) {
  let para = null;
  let list = null;
  let item = null;
  for (const raw of String(text).split(/\r\n?|\n/)) {
    const line = raw.trim();
    // "- x", "1. x", and a quiz's lettered choices ("a) x").
    const bullet = /^(?:[-*+]|(\d{1,3})[.)]|([a-h])\))\s+(.*)$/.exec(line);
    if (!line) {
      para = list = item = null;
    } else if (bullet) {
      const tag = bullet[1] || bullet[2] ? "ol" : "ul";
      if (list?.localName !== tag) {
        parent.append((list = el(tag)));
        if (bullet[2]) list.type = "a";
        if (bullet[1] > 1) list.start = Number(bullet[1]);
      }
      list.append((item = el("li")));
      renderInline(item, bullet[3], cite);
      para = null;
    } else if (item && /^\s/.test(raw)) {
      item.append(" "); // an indented line continues the list item above
      renderInline(item, line, cite);
    } else {
      list = item = null;
      const heading = /^#{1,6}\s+(.*)$/.exec(line); // headings become bold paragraphs
      if (para && !heading) para.append(" ");
      else parent.append((para = el("p")));
      renderInline(heading ? para.appendChild(el("strong")) : para, heading ? heading[1] : line, cite);
      if (heading) para = null;
    }
  }
}

// Server-Sent Events over fetch. An event can arrive split across network chunks (even inside
// a UTF-8 character), so text is buffered until the blank line that ends an event.

/** Reads an SSE body, calling onEvent(name, data) once per complete event. */
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const dispatch = (block) => {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (!line || line[0] === ":") continue; // ":" comments are keep-alives
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) onEvent(name, data.join("\n"));
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value, { stream: !done });
      let end;
      while ((end = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        dispatch(buffer.slice(0, end.index));
        buffer = buffer.slice(end.index + end[0].length);
      }
      if (done) break;
    }
    if (buffer.trim()) dispatch(buffer);
  } catch (error) {
    reader.cancel().catch(() => {}); // stopped, or an error event: close the connection
    throw error;
  }
}

/** Turns a non-2xx response ({"error": {"code", "message"}}) into a failure to show. */
async function responseFailure(response, t) {
  const error = (await response.json().catch(() => null))?.error || {};
  const status = response.status;
  if (status === 429) {
    // Retry-After is readable cross-origin only when the server exposes it.
    const seconds = parseInt(response.headers.get("Retry-After") ?? error.retry_after, 10);
    const when = seconds >= 0 ? fill(t.wait_seconds, { seconds }) : t.wait_moment;
    return failure(fill(t.too_many, { when }), true);
  }
  if (status === 504) return failure(t.too_slow, true);
  if (status >= 500) return failure(t.unavailable, true);
  if (status === 401) return failure(t.not_allowed, false);
  if (error.code === "lesson_not_found") return failure(t.unknown_lesson, false);
  return failure(error.message || t.not_taken, false);
}

// Styles. `:host { all: initial !important }` beats even the page's !important rules (for those
// the inner context wins), so nothing is inherited from the page; .root sets the font in px, so
// the page's root font size does not matter either.

const CSS = `
:host{all:initial!important}
*,::before,::after{box-sizing:border-box}
[hidden]{display:none!important}
.root{--a:var(--tutor-accent,#1d4ed8);--af:var(--tutor-accent-fg,#fff);--bg:var(--tutor-bg,#fff);
 --fg:var(--tutor-fg,#1f2328);--mu:#57606a;--bd:#d0d7de;--sf:#f3f5f8;--er:#b42318;--fo:#1d4ed8;
 font:400 15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--fg)}
@media (prefers-color-scheme:dark){.root{--a:var(--tutor-accent,#8ab4ff);
 --af:var(--tutor-accent-fg,#0b1220);--bg:var(--tutor-bg,#16181d);--fg:var(--tutor-fg,#e6e8eb);
 --mu:#a9b1bc;--bd:#3a404a;--sf:#22262d;--er:#ff8a80;--fo:#8ab4ff}}
button,textarea,input{font:inherit;color:inherit;margin:0}
button{cursor:pointer;line-height:1.2;border-radius:8px}
:focus{outline:none}
:focus-visible{outline:3px solid var(--fo);outline-offset:2px}
.launcher{position:fixed;bottom:20px;right:20px;z-index:2147483646;display:flex;align-items:center;
 gap:8px;min-height:48px;padding:12px 18px;border:0;border-radius:999px;background:var(--a);
 color:var(--af);font-weight:600;box-shadow:0 4px 16px rgba(0,0,0,.25)}
svg{width:20px;height:20px;flex:none}
.panel{position:fixed;bottom:84px;right:20px;z-index:2147483647;display:flex;flex-direction:column;
 width:400px;max-width:calc(100vw - 40px);height:620px;max-height:calc(100vh - 108px);
 background:var(--bg);border:1px solid var(--bd);border-radius:14px;overflow:hidden;
 box-shadow:0 12px 40px rgba(0,0,0,.28);animation:in .16s ease-out}
.left .launcher,.left .panel{right:auto;left:20px}
:host{display:block}
.inline .launcher,.inline .close{display:none}
.inline .panel{position:static;width:auto;max-width:none;height:var(--tutor-height,560px);
 max-height:none;box-shadow:none;animation:none}
@keyframes in{from{opacity:0;transform:translateY(8px)}}
header{display:flex;align-items:center;gap:8px;padding:12px 12px 12px 16px;border-bottom:1px solid var(--bd)}
h2{flex:1;margin:0;font-size:16px;font-weight:650;line-height:1.3}
.ghost{background:none;border:0;padding:7px 10px;font-size:14px}
.ghost:hover{background:var(--sf)}
.close{font-size:22px;line-height:1;padding:4px 10px}
.log{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:16px;display:flex;
 flex-direction:column;gap:14px}
.intro{color:var(--mu);margin:0;font-size:14px}
.msg{overflow-wrap:anywhere}
.msg :is(p,ul,ol){margin:0 0 8px}
.msg :is(p,ul,ol):last-child{margin-bottom:0}
.msg :is(ul,ol){padding-left:22px}
code{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;background:var(--bg);border-radius:4px;
 padding:1px 4px}
.user{align-self:flex-end;max-width:85%;padding:8px 12px;border-radius:14px 14px 4px;
 background:var(--a);color:var(--af);white-space:pre-wrap}
.bubble{padding:10px 12px;border-radius:14px 14px 14px 4px;background:var(--sf)}
.refusal .bubble{display:flex;gap:10px;background:none;border:1px dashed var(--mu);font-style:italic}
.refusal svg{width:18px;height:18px;margin-top:2px;color:var(--mu)}
.note{margin:6px 0 0;font-size:13px;color:var(--mu)}
.note a{color:var(--a);font-weight:600}
.cite,.source{border:0;background:none;padding:0 1px;color:var(--a);font-weight:600;font-size:.85em;
 text-decoration:underline;text-underline-offset:2px;border-radius:3px}
.cite{vertical-align:.15em}
.msg .sources{margin:6px 0 0;padding:0;list-style:none;font-size:13px;color:var(--mu);display:flex;
 flex-wrap:wrap;gap:2px 10px}
.source{font-size:13px;font-weight:500}
.quote{margin-top:8px;font-size:14px;border-left:3px solid var(--a);padding:2px 0 2px 10px}
summary{cursor:pointer;font-weight:600}
blockquote{margin:6px 0 0;white-space:pre-wrap}
.fb{display:flex;align-items:center;gap:6px;margin-top:6px;font-size:13px;color:var(--mu)}
.thumb{display:flex;padding:5px;border:1px solid var(--bd);background:none;color:var(--mu)}
.thumb:hover{background:var(--sf)}
.thumb[aria-pressed=true]{background:var(--a);border-color:var(--a);color:var(--af)}
.thumb svg{width:16px;height:16px}
.down svg{transform:rotate(180deg)}
.fb .failed{color:var(--er)}
.comment{display:flex;flex-wrap:wrap;gap:4px 8px;margin-top:8px}
.comment label{width:100%;margin:0}
.comment input{flex:1;min-width:0;padding:6px 10px;border:1px solid var(--mu);border-radius:8px;
 background:var(--bg)}
.comment button{margin:0}
.error{padding:10px 12px;border-left:4px solid var(--er);background:var(--sf);border-radius:6px}
.dots{display:flex;gap:4px;padding:7px 0}
.dots i{width:7px;height:7px;border-radius:50%;background:var(--mu);animation:dot 1s infinite}
.dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}
@keyframes dot{50%{opacity:.25}}
form{border-top:1px solid var(--bd);padding:10px 12px 12px}
label{display:block;font-size:13px;font-weight:600;margin:0 0 4px}
textarea{display:block;width:100%;min-height:64px;max-height:160px;resize:vertical;padding:8px 10px;
 border:1px solid var(--mu);border-radius:8px;background:var(--bg);line-height:1.4}
.row{display:flex;align-items:center;gap:8px;margin-top:8px}
.hint{flex:1;font-size:12px;color:var(--mu)}
.primary{border:0;padding:8px 16px;background:var(--a);color:var(--af);font-weight:600;font-size:14px}
.tools{display:flex;align-items:center;gap:6px;margin-top:8px;font-size:13px}
.tools .ghost{border:1px solid var(--mu);padding:5px 10px;font-size:13px}
.score{margin-left:auto;color:var(--mu)}
.nudge{margin:6px 0 0;font-size:13px;color:var(--fg)}
.graded .bubble{border-left:4px solid var(--a)}
.secondary{border:1px solid var(--mu);padding:6px 12px;background:var(--bg);font-size:14px;margin-top:8px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
@media (max-width:480px){.floating .panel{inset:0;width:auto;height:auto;max-width:none;
 max-height:none;border:0;border-radius:0}.floating [aria-expanded=true]{visibility:hidden}}
@media (prefers-reduced-motion:reduce){*,::before,::after{animation:none!important;transition:none!important}}
`;

const svg = (body) =>
  '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" ' +
  `stroke-linecap="round">${body}</svg>`;
const INFO_ICON = svg('<circle cx="12" cy="12" r="9"/><path d="M12 11v6M12 7.5v.01"/>');
const THUMB_ICON = svg(
  '<path stroke-linejoin="round" d="M7 10v11H3V10zm0 0 4-7c1.7 0 2.8 1.3 2.4 3L13 9h6a2 2 0 0 1 2 2.3l-1.2 ' +
    '7.4a2.5 2.5 0 0 1-2.5 2.3H7"/>',
);

// The skeleton: fixed markup only. The title is set later as text.
const SKELETON = `
<button class="launcher" type="button" aria-expanded="false" aria-controls="panel">
 ${svg('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/>')}<span class="launch-text"></span></button>
<div class="panel" id="panel" role="dialog" hidden>
 <header><h2></h2><button class="ghost clear" type="button"></button>
  <button class="ghost close" type="button">&times;</button></header>
 <div class="log" role="log" aria-live="polite" aria-relevant="additions" tabindex="0"></div>
 <div class="sr" role="status"></div>
 <form><label for="q"></label>
  <textarea id="q" rows="2" maxlength="${MAX_CHARS}"></textarea>
  <div class="row"><span class="hint" aria-hidden="true"></span>
   <button class="primary send" type="submit"></button>
   <button class="primary stop" type="button" hidden></button></div>
  <div class="tools"><button class="ghost ask-hint" type="button"></button>
   <button class="ghost ask-quiz" type="button"></button>
   <span class="score" hidden></span></div>
  <p class="nudge" hidden></p></form>
</div>`;

// Citations that point into the host page.

/** The section id a citation points at; older servers only give "lesson#section-slug-3". */
function sectionIdOf(citation) {
  const passage = String(citation.passage_id || "");
  return citation.section_id || passage.replace(/^[^#]*#?/, "").replace(/-\d+$/, "");
}

let highlighted = null;
let highlightTimer = 0;

/** Scrolls the host page to `target` and marks it with data-tutor-highlight for a moment. */
function highlightOnPage(target) {
  if (!document.getElementById("tutor-highlight-style")) {
    const style = el("style", { id: "tutor-highlight-style" });
    style.textContent =
      "[data-tutor-highlight]{outline:3px solid #e0a100!important;outline-offset:4px;" +
      "background-color:rgba(255,214,10,.3)!important;transition:background-color .3s}" +
      "@media (prefers-reduced-motion:reduce){[data-tutor-highlight]{transition:none}}";
    document.head.append(style);
  }
  highlighted?.removeAttribute("data-tutor-highlight");
  clearTimeout(highlightTimer);
  // An empty anchor (such as a page's introduction marker) lends its mark to what follows it.
  const mark = !target.textContent.trim() && target.nextElementSibling ? target.nextElementSibling : target;
  (highlighted = mark).setAttribute("data-tutor-highlight", "");
  highlightTimer = setTimeout(() => mark.removeAttribute("data-tutor-highlight"), HIGHLIGHT_MS);
  target.scrollIntoView({ behavior: scrollBehavior(), block: "start" });
}

let fieldCount = 0; // ids for the comment fields' labels

class LessonTutor extends HTMLElement {
  connectedCallback() {
    if (this.shadowRoot) return; // moved within the page: already built
    this.options ||= readOptions(this.dataset, null);
    if (!this.options.lesson) return;
    // The words in the lesson's language: data-lang, else the nearest lang attribute.
    const lang = this.options.lang || this.closest("[lang]")?.getAttribute("lang") || "";
    const primary = lang.toLowerCase().split("-")[0];
    this.lang = STRINGS[primary] ? primary : "en";
    this.t = wordsFor(this.lang);
    this.storageKey = "tutor:conversation:" + this.options.lesson;
    this.idKey = this.storageKey + ":id"; // its anonymous id
    this.quizKey = this.storageKey + ":quiz"; // the quiz: asked items, pending item, score
    this.conversation = this.load();
    this.quiz = this.loadQuiz();
    this.controller = null; // AbortController of the answer being streamed, if any
    this.build();
    if (this.options.open || this.options.placement === "inline") this.open(false);
  }

  disconnectedCallback() {
    this.controller?.abort();
  }

  build() {
    const root = this.attachShadow({ mode: "open" });
    const inline = this.options.placement === "inline";
    const wrap = el("div", { class: `root ${this.options.placement}${inline ? "" : " floating"}`, lang: this.lang });
    wrap.innerHTML = SKELETON; // constant markup, see SKELETON
    root.append(el("style", null, CSS), wrap);
    const $ = (selector) => root.querySelector(selector);
    this.launcher = $(".launcher");
    this.panel = $(".panel");
    this.log = $(".log");
    this.status = $(".sr");
    this.input = $("textarea");
    this.sendButton = $(".send");
    this.stopButton = $(".stop");
    this.label = $("label");
    this.scoreNode = $(".score");
    this.nudgeNode = $(".nudge");
    this.hintButton = $(".ask-hint");
    this.quizButton = $(".ask-quiz");
    const t = this.t;
    const title = this.options.title || t.title;
    this.panel.setAttribute("aria-label", title);
    $("h2").textContent = title;
    $(".launch-text").textContent = t.launcher;
    $(".clear").textContent = t.clear;
    $(".close").setAttribute("aria-label", t.close);
    this.input.placeholder = t.placeholder;
    $(".row .hint").textContent = t.keys;
    this.sendButton.textContent = t.send;
    this.stopButton.textContent = t.stop;
    this.hintButton.textContent = t.hint;
    this.hintButton.title = t.hint_title;
    this.quizButton.textContent = t.quiz;
    this.quizButton.title = t.quiz_title;
    if (inline) {
      // Part of the page: always open, a region among the page's landmarks, nothing to close.
      this.panel.setAttribute("role", "region");
      this.panel.hidden = false;
      this.launcher.hidden = true;
    }

    this.launcher.onclick = () => (this.panel.hidden ? this.open(true) : this.close());
    $(".close").onclick = () => this.close();
    $(".clear").onclick = () => this.clear();
    this.stopButton.onclick = () => {
      this.controller?.abort();
      this.input.focus();
    };
    wrap.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden && !inline) {
        event.preventDefault();
        this.close();
      }
    });
    this.input.addEventListener("input", () => (this.nudgeNode.hidden = true));
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("form").requestSubmit();
      }
    });
    $("form").onsubmit = (event) => {
      event.preventDefault();
      const question = this.input.value.trim();
      if (!question || this.controller) return;
      this.input.value = "";
      // While a quiz question waits for its reply, what is sent is that reply.
      const pending = this.quiz.pending;
      const reply = pending ? { mode: "quiz", quiz_item: pending, quiz_attempt: this.quiz.attempt || 1 } : {};
      this.ask(question.slice(0, MAX_CHARS), reply);
    };
    this.hintButton.onclick = () => {
      const question = this.input.value.trim();
      if (this.controller) return;
      if (!question) {
        // A quiz question waiting for its reply: the hint is for it (and it keeps waiting).
        if (this.quiz.pending && this.quiz.question) {
          return this.ask(this.quiz.question, { mode: "hint" }, false, this.t.quiz_hint_request);
        }
        this.nudge(this.t.nudge);
        return this.input.focus();
      }
      this.input.value = "";
      this.ask(question.slice(0, MAX_CHARS), { mode: "hint" });
    };
    this.quizButton.onclick = () => {
      if (this.controller) return;
      this.ask(this.t.quiz, { mode: "quiz", quiz_asked: this.quiz.asked.slice(-100) }, true);
    };
    this.showQuizState();
    this.renderAll();
  }

  open(focus) {
    this.panel.hidden = false;
    this.launcher.setAttribute("aria-expanded", "true");
    this.log.scrollTop = this.log.scrollHeight;
    if (focus) this.input.focus();
  }

  close() {
    if (this.options.placement === "inline") return;
    this.panel.hidden = true;
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.focus();
  }

  // The conversation, kept in localStorage.

  load() {
    this.conversationId = newConversationId();
    try {
      const id = localStorage.getItem(this.idKey);
      if (/^[\w-]{1,64}$/.test(id || "")) this.conversationId = id; // test(null) sees "null"
      const saved = JSON.parse(localStorage.getItem(this.storageKey)) || [];
      return saved.filter((m) => typeof m?.content === "string" && /^(user|assistant)$/.test(m.role));
    } catch (_) {
      return []; // blocked or corrupt storage: start afresh
    }
  }

  save() {
    try {
      if (this.conversation.length) {
        localStorage.setItem(this.storageKey, JSON.stringify(this.conversation));
        localStorage.setItem(this.idKey, this.conversationId);
      } else {
        localStorage.removeItem(this.storageKey);
        localStorage.removeItem(this.idKey);
      }
    } catch (_) {
      /* full or blocked: the conversation still lives in the page */
    }
  }

  loadQuiz() {
    const empty = { asked: [], pending: null, correct: 0, graded: 0 };
    try {
      const saved = JSON.parse(localStorage.getItem(this.quizKey));
      if (!saved || !Array.isArray(saved.asked)) return empty;
      return {
        asked: saved.asked.filter((id) => /^[\w-]{1,64}$/.test(id)),
        pending: /^[\w-]{1,64}$/.test(saved.pending || "") ? saved.pending : null,
        question: typeof saved.question === "string" ? saved.question.slice(0, MAX_CHARS) : null,
        attempt: Math.max(1, Math.floor(Number(saved.attempt)) || 1),
        correct: Number(saved.correct) || 0,
        graded: Number(saved.graded) || 0,
      };
    } catch (_) {
      return empty;
    }
  }

  saveQuiz() {
    try {
      if (this.quiz.asked.length) localStorage.setItem(this.quizKey, JSON.stringify(this.quiz));
      else localStorage.removeItem(this.quizKey);
    } catch (_) {
      /* the score still lives in the page */
    }
  }

  /** The label says what the box is for, and the score shows once a reply was graded. */
  showQuizState() {
    this.label.textContent = !this.quiz.pending
      ? this.t.label_question
      : this.quiz.attempt > 1
        ? this.t.label_quiz_retry
        : this.t.label_quiz_answer;
    this.scoreNode.hidden = !this.quiz.graded;
    this.scoreNode.textContent = fill(this.t.score, { correct: this.quiz.correct, graded: this.quiz.graded });
  }

  /** Keeps the quiz's state from a reply: a question asked, or a reply graded. */
  followQuiz(reply) {
    if (reply.kind === "quiz_question" && reply.quiz?.item_id) {
      this.quiz.pending = reply.quiz.item_id;
      this.quiz.question = reply.quiz.question;
      this.quiz.attempt = 1;
      this.quiz.asked = [...this.quiz.asked.filter((id) => id !== reply.quiz.item_id), reply.quiz.item_id];
    } else if (reply.kind === "grade" && reply.quiz?.tries_left > 0) {
      // Not yet right, with another try: the question keeps waiting, the score waits too.
      this.quiz.pending = reply.quiz.item_id;
      this.quiz.question = reply.quiz.question;
      this.quiz.attempt = (reply.quiz.attempt || 1) + 1;
    } else if (reply.kind === "grade") {
      this.quiz.pending = null;
      this.quiz.attempt = 1;
      this.quiz.graded += 1;
      if (reply.grade === "correct") this.quiz.correct += 1;
      this.announce(fill(this.t.score, { correct: this.quiz.correct, graded: this.quiz.graded }));
    } else if (this.quiz.pending && reply.kind !== "hint") {
      this.quiz.pending = null; // answered with something else: the quiz question lapses
    }
    this.saveQuiz();
    this.showQuizState();
  }

  clear() {
    if (this.controller) {
      this.controller.abort();
      this.controller = null;
      this.setBusy(false);
    }
    this.conversation = [];
    this.conversationId = newConversationId(); // a new conversation, unlinked from the last
    this.quiz = { asked: [], pending: null, correct: 0, graded: 0 };
    this.saveQuiz();
    this.showQuizState();
    this.save();
    this.renderAll();
    this.announce(this.t.cleared);
    this.input.focus();
  }

  // Rendering.

  renderAll() {
    this.log.replaceChildren();
    if (!this.conversation.length)
      this.log.append(
        el(
          "p",
          { class: "intro" },
          this.t.intro,
        ),
      );
    for (const message of this.conversation)
      this.log.append(message.role === "user" ? this.renderQuestion(message) : this.renderAnswer(message));
    this.log.scrollTop = this.log.scrollHeight;
  }

  /** Adds `node` to the log (in place of `replacing`, if given), following it when at the end. */
  append(node, replacing) {
    const follow = this.atEnd();
    this.log.querySelector(".intro")?.remove();
    if (replacing?.isConnected) replacing.replaceWith(node);
    else this.log.append(node);
    if (follow) this.log.scrollTop = this.log.scrollHeight;
  }

  atEnd() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
  }

  /** Says `text` to screen readers through the visually hidden status node. */
  /** Says on screen (and to screen readers) what to do, until the learner types. */
  nudge(text) {
    this.nudgeNode.textContent = text;
    this.nudgeNode.hidden = false;
    this.announce(text);
  }

  announce(text) {
    this.status.textContent = "";
    setTimeout(() => (this.status.textContent = text), 50); // a change, even for the same words
  }

  renderQuestion(message) {
    return el("div", { class: "msg user" }, message.content);
  }

  /** A finished (or stopped) answer: text with citation buttons, sources and related lesson. */
  renderAnswer(message, offered = []) {
    const citations = Array.isArray(message.citations) ? message.citations : [];
    const byNumber = new Map([...offered, ...citations].map((c) => [Number(c.n), c]));
    const kind = message.refused ? " refusal" : message.kind === "grade" ? " graded" : "";
    const node = el("div", { class: "msg assistant" + kind });
    const bubble = el("div", { class: "bubble" });
    const body = el("div");
    const button = (citation, className, label) => {
      const title = citation.section || this.t.source;
      const b = el("button", { type: "button", class: className, title }, label);
      b.onclick = () => this.showCitation(citation, node);
      return b;
    };
    renderMarkdown(body, message.content, (n) =>
      byNumber.has(n) ? button(byNumber.get(n), "cite", `[${n}]`) : `[${n}]`,
    );
    if (message.refused) bubble.innerHTML = INFO_ICON; // constant markup
    bubble.append(body);
    node.append(bubble);
    if (message.incomplete) node.append(el("p", { class: "note" }, this.t.incomplete));
    if (!message.refused && citations.length) {
      const list = el("ul", { class: "sources" }, el("li", null, this.t.sources));
      for (const c of citations)
        list.append(el("li", null, button(c, "source", `[${c.n}] ${c.section || this.t.passage}`)));
      node.append(list);
    }
    const related = message.related_lesson;
    if (related?.id) {
      const href = this.options.api + "/lessons/" + encodeURIComponent(related.id);
      const link = el("a", { href }, related.title || related.id);
      node.append(el("p", { class: "note" }, this.t.try_lesson, link));
    }
    if (message.answer_id && !message.refused && !message.incomplete)
      node.append(...this.renderFeedback(message));
    return node;
  }

  /** Thumbs up and down under an answer; "down" opens a box for an optional comment. */
  renderFeedback(message) {
    const note = el("span");
    const thumb = (rating, label) => {
      const b = el("button", { type: "button", class: "thumb " + rating, "aria-label": label, title: label });
      b.innerHTML = THUMB_ICON; // constant markup
      b.onclick = () => rate(rating);
      return b;
    };
    const up = thumb("up", this.t.helped);
    const down = thumb("down", this.t.not_helped);
    const input = el("input", { id: "comment" + ++fieldCount, maxlength: MAX_COMMENT });
    const send = el("button", { type: "button", class: "secondary" }, this.t.send);
    const label = el("label", { for: input.id }, this.t.missing);
    const box = el("div", { class: "comment", hidden: "" }, label, input, send);
    const show = (rating, text, failed) => {
      up.setAttribute("aria-pressed", rating === "up");
      down.setAttribute("aria-pressed", rating === "down");
      note.className = failed ? "failed" : "";
      note.textContent = text || "";
    };
    let latest = 0; // only the last click's outcome is shown
    const rate = async (rating, comment) => {
      const before = message.rating;
      const mine = ++latest;
      show(rating);
      if (rating === "up") box.hidden = true;
      const ok = await fetch(this.options.api + "/v1/feedback", {
        method: "POST",
        headers: this.headers({}),
        body: JSON.stringify({ answer_id: message.answer_id, rating, comment: comment?.trim() || undefined }),
      }).then((response) => response.ok, () => false);
      if (mine !== latest) return;
      if (!ok) return show(before, this.t.feedback_failed, true);
      message.rating = rating;
      this.save();
      if (rating === "down" && comment === undefined) return (box.hidden = false);
      const focused = box.contains(this.shadowRoot.activeElement);
      box.hidden = true;
      show(rating, this.t.feedback_thanks);
      if (focused) down.focus(); // not lost with the closing box
    };
    send.onclick = () => rate("down", input.value);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        send.click();
      } else if (event.key === "Escape") {
        event.stopPropagation(); // closes this box, not the panel
        box.hidden = true;
        down.focus();
      }
    });
    show(message.rating);
    return [el("div", { class: "fb" }, el("span", null, this.t.helpful), up, down, note), box];
  }

  /** Request headers: JSON, the page's key if it has one, and `extra`. */
  headers(extra) {
    const headers = { "Content-Type": "application/json", ...extra };
    if (this.options.key) headers["X-Tutor-Key"] = this.options.key;
    if (this.options.token) headers.Authorization = "Bearer " + this.options.token;
    return headers;
  }

  /** Jumps to the cited section of the host page, or else shows the quoted passage here. */
  showCitation(citation, node) {
    const target = document.getElementById(sectionIdOf(citation));
    if (target) {
      // A full-screen panel would hide the page it scrolls, so it steps aside.
      if (matchMedia("(max-width: 480px)").matches) this.close();
      return highlightOnPage(target);
    }
    let quote = node.querySelector(`details[data-n="${Number(citation.n)}"]`);
    if (!quote) {
      const title = `[${citation.n}] ${citation.section || this.t.passage}`;
      quote = el(
        "details",
        { class: "quote", "data-n": Number(citation.n) },
        el("summary", null, title),
        el("blockquote", null, citation.text || ""),
      );
      node.append(quote);
    }
    quote.open = true;
    quote.scrollIntoView({ block: "nearest", behavior: scrollBehavior() });
    quote.querySelector("summary").focus();
  }

  /** An inline error message, with a Retry button when asking again may help. */
  renderError(text, retry) {
    const node = el("div", { class: "msg error" }, text);
    if (retry) {
      const button = el("button", { type: "button", class: "secondary" }, this.t.retry);
      button.onclick = () => {
        node.remove();
        retry();
      };
      node.append(el("br"), button);
    }
    return node;
  }

  // Asking.

  /** Asks `question` (with `extra` request fields: a mode, a quiz item); `quizMe` sends no
   * message, only the request for a quiz question. */
  ask(question, extra = {}, quizMe = false, shown = question) {
    // Quiz turns are not part of the conversation a follow-up refers to.
    const history = this.conversation
      .filter((m) => m.content && !m.quiz)
      .slice(-HISTORY_MESSAGES)
      .map(({ role, content }) => ({ role, content }));
    this.nudgeNode.hidden = true;
    const message = { role: "user", content: shown, quiz: !!extra.mode || undefined };
    this.conversation.push(message);
    this.save();
    this.append(this.renderQuestion(message));
    this.stream({ ...(quizMe ? {} : { message: question, history }), ...extra });
  }

  /** Streams one answer into the log. Every failure ends in a message the learner can act on. */
  async stream(fields) {
    const controller = (this.controller = new AbortController());
    this.setBusy(true);
    // The growing text is hidden from screen readers; the finished answer replaces it and the
    // log announces it once.
    const bubble = el("div", { class: "bubble" }, el("span", { class: "dots" }, el("i"), el("i"), el("i")));
    const pending = el("div", { class: "msg assistant streaming", "aria-hidden": "true" }, bubble);
    this.append(pending);

    let text = "";
    let offered = []; // the passages the answer may cite, sent first
    let finished = null;
    let frame = 0;
    const paint = () => {
      frame = 0;
      const follow = this.atEnd();
      bubble.replaceChildren();
      renderMarkdown(bubble, text, (n) => `[${n}]`);
      if (follow) this.log.scrollTop = this.log.scrollHeight;
    };

    try {
      const response = await fetch(this.options.api + "/v1/chat", {
        method: "POST",
        headers: this.headers({ Accept: "text/event-stream" }),
        body: JSON.stringify({
          lesson_id: this.options.lesson,
          ...fields,
          stream: true,
          conversation_id: this.conversationId,
        }),
        signal: controller.signal,
      });
      if (!response.ok) throw await responseFailure(response, this.t);
      if (!/event-stream/.test(response.headers.get("Content-Type"))) {
        finished = await response.json(); // answered in one piece
      } else {
        await readEvents(response.body, (name, data) => {
          let payload;
          try {
            payload = JSON.parse(data);
          } catch (_) {
            return; // not one of ours
          }
          if (name === "citations") offered = payload.citations || [];
          else if (name === "delta" && typeof payload.text === "string") {
            text += payload.text;
            frame ||= requestAnimationFrame(paint);
          } else if (name === "done") finished = payload;
          else if (name === "error")
            throw failure(
              payload.error?.code === "upstream_timeout"
                ? this.t.slow_finish
                : this.t.stopped_early,
              true,
            );
        });
      }
      if (typeof finished?.answer !== "string")
        throw failure(this.t.cut_off, true);
      const answer = {
        role: "assistant",
        content: finished.answer,
        citations: finished.citations || [],
        refused: !!finished.refused,
        related_lesson: finished.related_lesson || null,
        answer_id: finished.answer_id, // for feedback; older servers send none
        kind: finished.kind,
        quiz: fields.mode ? true : undefined,
      };
      this.conversation.push(answer);
      this.save();
      this.followQuiz(finished);
      this.append(this.renderAnswer(answer, offered), pending);
    } catch (error) {
      cancelAnimationFrame(frame);
      if (!pending.isConnected) return; // cleared meanwhile: nothing left to show
      const partial = text.trim() && { role: "assistant", content: text, citations: [], incomplete: true };
      const partialNode = partial && this.renderAnswer(partial, offered);
      if (partialNode) this.append(partialNode, pending);
      else pending.remove();
      if (controller.signal.aborted) {
        // Stopped by the learner: what came so far is kept, marked incomplete.
        if (partial) {
          this.conversation.push(partial);
          this.save();
        }
        this.announce(this.t.stopped);
      } else {
        // Shown, marked incomplete, but not kept: Retry replaces it.
        const shown =
          error.retry === undefined
            ? failure(this.t.offline, true)
            : error;
        const retry = () => {
          partialNode?.remove();
          this.stream(fields);
        };
        this.append(this.renderError(shown.message, shown.retry && retry));
      }
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.setBusy(false);
      }
    }
  }

  setBusy(busy) {
    this.log.setAttribute("aria-busy", busy);
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.hintButton.disabled = busy;
    this.quizButton.disabled = busy;
  }
}

if (!customElements.get(TAG)) customElements.define(TAG, LessonTutor);

/** Adds this script tag's widget to the page once the body exists. */
function mount() {
  const options = script && readOptions(script.dataset, script.src);
  if (!options?.lesson) return console.warn("tutor widget: the script tag needs data-lesson");
  const widget = document.createElement(TAG);
  widget.options = options;
  const target = options.target && document.getElementById(options.target);
  if (options.placement === "inline" && target) target.append(widget);
  else if (options.placement === "inline" && script.parentElement?.closest("body")) script.after(widget);
  else document.body.append(widget);
}

if (document.body) mount();
else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
