// What both browser test files need: small HTTP helpers, the real tutor as a child process,
// Chromium, and axe.

import { spawn } from "node:child_process";
import http from "node:http";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

/** Starts `server` on a free port of 127.0.0.1; resolves to the port. */
export function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}

export async function freePort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Runs `tutor ARGS` listening on 127.0.0.1:`port` and waits until /readyz says so.
 * Returns { origin, output(), stop() }; stop() sends SIGTERM (SIGKILL after 5 s).
 */
export async function startTutor(bin, port, args, options = {}) {
  let output = "";
  const child = spawn(bin, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  const keep = (chunk) => (output = (output + chunk).slice(-20000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const origin = `http://127.0.0.1:${port}`;
  const tutor = {
    origin,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`tutor exited with ${child.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${origin}/readyz`)).status === 200) return tutor;
    } catch (_) {
      /* not listening yet */
    }
    await sleep(250);
  }
  await tutor.stop();
  throw new Error(`tutor was not ready within 60 s:\n${output}`);
}

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Serious and critical axe violations of a page or frame, one line each. */
export async function axeViolations(target) {
  await target.addScriptTag({ path: axePath });
  const results = await target.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}
