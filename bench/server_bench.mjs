#!/usr/bin/env node
// `phinfer serve` under concurrent clients, through the OpenAI HTTP API (plain fetch, streamed):
// aggregate generated tokens/s and time to first token p50/p99 for each number of clients, and the
// time to first token of turn 1 against turn 10 of one conversation (prefix reuse).
//
//   node bench/server_bench.mjs -m mini-int4.phi [--threads 2] [--clients 1,4,16] [--prompt-tokens 64]
//        [--max-tokens 64] [--requests 16] [--turns 10] [--turn-tokens 16]
//
// Each client count sends --requests requests in all (each client one after another; at least one
// per client), every prompt different (random common words, so the prefix cache cannot help) and of
// --prompt-tokens tokens. The binary is $PHINFER_CLI or ./build/phinfer.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("-")) acc.push([a.replace(/^-+/, ""), all[i + 1]]);
  return acc;
}, []));
const MODEL = args.m ?? args.model;
if (!MODEL) throw new Error("give the model: -m MODEL (a phinfer model file or Hugging Face folder)");
const CLI = process.env.PHINFER_CLI ?? "./build/phinfer";
if (!existsSync(CLI)) throw new Error(`no phinfer binary at ${CLI}: build it or set PHINFER_CLI`);
const THREADS = Number(args.threads ?? 2);
const CLIENTS = (args.clients ?? "1,4,16").split(",").map(Number);
const PROMPT_TOKENS = Number(args["prompt-tokens"] ?? 64);
const MAX_TOKENS = Number(args["max-tokens"] ?? 64);
const REQUESTS = Number(args.requests ?? 16);
const TURNS = Number(args.turns ?? 10);
const TURN_TOKENS = Number(args["turn-tokens"] ?? 16);

async function startServer() {
  const proc = spawn(CLI, ["serve", "-m", MODEL, "--alias", "bench", "--port", "0", "--threads", String(THREADS),
                           "--parallel", String(Math.max(...CLIENTS))], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const port = await new Promise((resolve, reject) => {
    proc.stderr.on("data", (d) => {
      stderr += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (code) => reject(new Error(`server exited (${code}):\n${stderr}`)));
  });
  return { proc, base: `http://127.0.0.1:${port}` };
}

// A streamed request: time to the first token, tokens generated, wall time.
async function timed(base, route, body) {
  const start = performance.now();
  const r = await fetch(base + route, { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify({ ...body, model: "bench", stream: true, temperature: 0,
                                                               stream_options: { include_usage: true } }) });
  if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
  let first = 0, usage = null, text = "", buf = "";
  const decoder = new TextDecoder();
  for await (const part of r.body) {
    buf += decoder.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.usage) usage = chunk.usage;
      const piece = chunk.choices[0]?.delta?.content ?? chunk.choices[0]?.text ?? "";
      if (chunk.choices.length && !first) first = performance.now();  // the first token's chunk, even if its text is held back
      text += piece;
    }
  }
  return { ttft: (first - start) / 1000, seconds: (performance.now() - start) / 1000, usage, text };
}

// Prompts of PROMPT_TOKENS tokens: common words that are one token each, drawn at random (the first
// prompt finds the word count; every answer's usage is checked).
const WORDS = ["the", "cat", "dog", "house", "tree", "water", "light", "green", "small", "river", "stone", "bird", "paper",
               "music", "city", "garden", "window", "summer", "winter", "apple", "road", "book", "friend", "table"];
let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
const words = (n) => Array.from({ length: n }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(" ");
let promptWords = PROMPT_TOKENS - 1;  // and <s>
async function calibrate(base) {
  for (;;) {
    const r = await timed(base, "/v1/completions", { prompt: words(promptWords), max_tokens: 1 });
    if (r.usage.prompt_tokens === PROMPT_TOKENS) return;
    promptWords += PROMPT_TOKENS - r.usage.prompt_tokens;
  }
}

const percentile = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };

const srv = await startServer();
const load = () => os.loadavg()[0].toFixed(1);
console.log(`model ${MODEL}, --threads ${THREADS}, ${PROMPT_TOKENS}-token prompts, ${MAX_TOKENS} tokens each; ` +
            `${os.cpus().length} CPUs, load average ${load()} at the start`);
try {
  await calibrate(srv.base);
  const rows = [];
  for (const clients of CLIENTS) {
    const perClient = Math.max(1, Math.round(REQUESTS / clients));
    const prompts = [];
    for (let i = 0; i < clients * perClient; i++) prompts.push(words(promptWords));
    const start = performance.now();
    const results = (await Promise.all(Array.from({ length: clients }, async (_, c) => {
      const out = [];
      for (let k = 0; k < perClient; k++)
        out.push(await timed(srv.base, "/v1/completions", { prompt: prompts[c * perClient + k], max_tokens: MAX_TOKENS }));
      return out;
    }))).flat();
    const wall = (performance.now() - start) / 1000;
    const generated = results.reduce((a, r) => a + r.usage.completion_tokens, 0);
    const promptTokens = results.map((r) => r.usage.prompt_tokens);
    // Words of two tokens make some prompts longer, others (the same word count) shorter: reported.
    const meanPrompt = promptTokens.reduce((a, b) => a + b, 0) / promptTokens.length;
    const ttfts = results.map((r) => r.ttft);
    rows.push({ clients, requests: results.length, generated, wall, tps: generated / wall,
                p50: percentile(ttfts, 50), p99: percentile(ttfts, 99) });
    const row = rows.at(-1);
    console.log(`${clients} clients: ${row.requests} requests, ${generated} tokens in ${wall.toFixed(1)} s = ` +
                `${row.tps.toFixed(2)} tok/s aggregate (${(row.tps / rows[0].tps).toFixed(2)}x of ${rows[0].clients}), ` +
                `TTFT p50 ${row.p50.toFixed(2)} s p99 ${row.p99.toFixed(2)} s; prompts ${meanPrompt.toFixed(1)} tokens on average; load average ${load()}`);
  }
  // One conversation, resent whole every turn, as chat clients do.
  const messages = [{ role: "system", content: "You are a helpful assistant." }];
  const turns = [];
  for (let t = 1; t <= TURNS; t++) {
    messages.push({ role: "user", content: `Turn ${t}: tell me more about ${WORDS[t % WORDS.length]}s.` });
    const r = await timed(srv.base, "/v1/chat/completions", { messages, max_tokens: TURN_TOKENS });
    messages.push({ role: "assistant", content: r.text });
    turns.push({ turn: t, prompt: r.usage.prompt_tokens, ttft: r.ttft });
  }
  console.log("conversation: " + turns.map((t) => `turn ${t.turn} (${t.prompt} prompt tokens) TTFT ${t.ttft.toFixed(2)} s`).join(", "));
  console.log(`turn ${TURNS} / turn 1 TTFT: ${(turns.at(-1).ttft / turns[0].ttft).toFixed(2)}x`);
  const rss = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${srv.proc.pid}/status`, "utf8"))[1]) / 1024;
  console.log(`server peak RSS ${rss.toFixed(0)} MB`);
} finally {
  srv.proc.kill("SIGTERM");
}
