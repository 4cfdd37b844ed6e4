// Starts `phinfer serve` on a free loopback port for a test file and stops it afterwards.
// ctest sets PHINFER_CLI and PHINFER_SHARED_DIR; to test another build (e.g. a sanitizer's), run
//   PHINFER_CLI=build-asan/phinfer PHINFER_SHARED_DIR=../shared node --test tests/server/
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import OpenAI from "openai";

export const CLI = process.env.PHINFER_CLI;
export const SHARED = process.env.PHINFER_SHARED_DIR;
if (!CLI || !existsSync(CLI)) throw new Error(`PHINFER_CLI must name the phinfer binary (found '${CLI}'); run through ctest`);
if (!SHARED || !existsSync(path.join(SHARED, "models")))
  throw new Error(`PHINFER_SHARED_DIR must name the shared test data (found '${SHARED}')`);
export const MHA = path.join(SHARED, "models", "phi3-tiny-mha");        // Phi-3 chat template, random weights
export const STORIES = path.join(SHARED, "models", "stories260K-phi3");  // a real tiny model, no chat template

export async function startServer(args = [], { apiKey } = {}) {
  const full = ["serve", "-m", MHA, "-m", STORIES, "--host", "127.0.0.1", "--port", "0", "--threads", "2", ...args];
  if (apiKey) full.push("--api-key", apiKey);
  const proc = spawn(CLI, full, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start in 60 s:\n" + stderr)), 60000);
    proc.stderr.on("data", (d) => {
      stderr += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${stderr}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    proc, port, base, exited,
    stderr: () => stderr,
    client: new OpenAI({ baseURL: base + "/v1", apiKey: apiKey || "unused", maxRetries: 0, timeout: 60000 }),
    rss: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))[1]) * 1024,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      return exited;
    },
  };
}

// Raw POST (for bodies the openai client would never send).
export async function post(base, route, body, headers = {}) {
  const r = await fetch(base + route, {
    method: "POST", headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* left null: the caller checks */ }
  return { status: r.status, headers: r.headers, text, json };
}

// The value of one Prometheus sample line, e.g. metric(text, 'phinfer_running_requests{model="x"}').
export function metric(text, name) {
  for (const line of text.split("\n")) if (line.startsWith(name + " ")) return Number(line.slice(name.length + 1));
  return undefined;
}

export function assertOpenAIError(assert, res, status, param) {
  assert.equal(res.status, status, res.text);
  assert.ok(res.json && res.json.error, "an OpenAI error object: " + res.text);
  const e = res.json.error;
  assert.equal(typeof e.message, "string");
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, "string");
  assert.ok("param" in e && "code" in e);
  if (param !== undefined) assert.equal(e.param, param);
}
