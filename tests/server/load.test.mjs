// A bounded load test: 64 concurrent clients for PHINFER_LOAD_SECONDS (default 20) mixing normal,
// streamed, cancelled, oversized and malformed requests. No crash, every response well-formed (an
// answer of the right shape, or an OpenAI error object with the right status), resident memory
// bounded, and the server idle and healthy afterwards.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, metric } from "./helpers.mjs";

const SECONDS = Number(process.env.PHINFER_LOAD_SECONDS ?? 20);
const CLIENTS = 64;
const MAX_BODY = 65536, CTX = 512, MAX_TOKENS = 48, MAX_QUEUE = 48;  // fewer slots than clients: some get 503
// Growth of the server's resident memory over the run: KV of 16 running requests at --ctx-size
// (a few MB for these models), the prefix cache's share of what the run computed, allocator slack.
const RSS_GROWTH_BOUND = 192 << 20;

let srv;
before(async () => {
  srv = await startServer(["--parallel", "16", "--max-queue", String(MAX_QUEUE), "--ctx-size", String(CTX),
                           "--max-tokens", String(MAX_TOKENS), "--max-body", String(MAX_BODY), "--timeout", "10"]);
});
after(async () => { const { code } = await srv.stop(); assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr()); });

// A small seeded generator, so a failing mix can be replayed.
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHAT = "/v1/chat/completions", COMPLETIONS = "/v1/completions", RESPONSES = "/v1/responses";
const chatBody = (rnd, extra = {}) => ({ model: "phi3-tiny-mha", temperature: rnd() < 0.5 ? 0 : 1, seed: Math.floor(rnd() * 1000),
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: `Question ${Math.floor(rnd() * 100)}: why?` }],
  max_tokens: 1 + Math.floor(rnd() * 24), ...extra });
const completionBody = (rnd, extra = {}) => ({ model: "stories260K-phi3", prompt: "Once upon a time".slice(0, 4 + Math.floor(rnd() * 12)),
  max_tokens: 1 + Math.floor(rnd() * 32), temperature: 0, ...extra });

// Each kind: how to ask, and which error (status, param) it must get; null: it must succeed.
const KINDS = {
  chat: (rnd) => ({ route: CHAT, body: chatBody(rnd, rnd() < 0.3 ? { n: 2, logprobs: true, top_logprobs: 2 } : {}) }),
  completion: (rnd) => ({ route: COMPLETIONS, body: completionBody(rnd, rnd() < 0.3 ? { echo: true, logprobs: 1 } : {}) }),
  streamChat: (rnd) => ({ route: CHAT, body: chatBody(rnd, { stream: true, stream_options: { include_usage: true } }) }),
  streamCompletion: (rnd) => ({ route: COMPLETIONS, body: completionBody(rnd, { stream: true }) }),
  streamResponses: (rnd) => ({ route: RESPONSES, body: { model: "phi3-tiny-mha", input: "Hello", max_output_tokens: 8, stream: true } }),
  cancelStream: (rnd) => ({ route: CHAT, body: chatBody(rnd, { stream: true, max_tokens: MAX_TOKENS }), abortAfterMs: rnd() * 300 }),
  cancelRequest: (rnd) => ({ route: COMPLETIONS, body: completionBody(rnd, { max_tokens: MAX_TOKENS }), abortAfterMs: rnd() * 200 }),
  bodyTooLarge: (rnd) => ({ route: CHAT, body: chatBody(rnd, { messages: [{ role: "user", content: "x".repeat(MAX_BODY) }] }),
                            error: [413] }),
  promptTooLong: (rnd) => ({ route: CHAT, body: chatBody(rnd, { messages: [{ role: "user", content: "word ".repeat(CTX + 50) }] }),
                             error: [400, "messages"] }),
  maxTokensTooLarge: (rnd) => ({ route: COMPLETIONS, body: completionBody(rnd, { max_tokens: MAX_TOKENS + 1 + Math.floor(rnd() * 1e6) }),
                                 error: [400, "max_tokens"] }),
  invalidJson: (rnd) => ({ route: CHAT, body: '{"model": "phi3-tiny-mha", "messages": [' + "{".repeat(Math.floor(rnd() * 50)),
                           error: [400] }),
  deeplyNested: () => ({ route: CHAT, body: "[".repeat(20000) + "]".repeat(20000), error: [400] }),
  wrongTypes: (rnd) => {
    const bad = [{ messages: "hi" }, { temperature: "hot" }, { n: "2" }, { max_tokens: 1.5 }, { stream: "yes" }, { stop: [1] },
                 { messages: [{ role: "user", content: 5 }] }][Math.floor(rnd() * 7)];
    const field = Object.keys(bad)[0];
    return { route: CHAT, body: chatBody(rnd, bad), error: [400, field === "messages" ? undefined : field] };
  },
  unknownField: (rnd) => ({ route: CHAT, body: chatBody(rnd, { tools: [{ type: "function" }] }), error: [400, "tools"] }),
  unknownModel: (rnd) => ({ route: COMPLETIONS, body: completionBody(rnd, { model: "no-such-model" }), error: [404, "model"] }),
};
const NAMES = Object.keys(KINDS);

// Checks one answer; returns a problem in words, or null.
function checkError(status, text, expected) {
  let j;
  try { j = JSON.parse(text); } catch { return `status ${status}: not JSON: ${text.slice(0, 200)}`; }
  const e = j.error;
  if (!e || typeof e.message !== "string" || !e.message || typeof e.type !== "string" || !("param" in e) || !("code" in e))
    return `status ${status}: not an OpenAI error object: ${text.slice(0, 200)}`;
  if (expected && status !== expected[0]) return `expected ${expected[0]}, got ${status}: ${text.slice(0, 200)}`;
  if (expected && expected[1] !== undefined && e.param !== expected[1]) return `expected param ${expected[1]}: ${text.slice(0, 200)}`;
  return null;
}

function checkJsonAnswer(route, text) {
  let j;
  try { j = JSON.parse(text); } catch { return `not JSON: ${text.slice(0, 200)}`; }
  if (route === CHAT && !(j.object === "chat.completion" && j.choices.every((c) => typeof c.message.content === "string")))
    return "not a chat.completion: " + text.slice(0, 200);
  if (route === COMPLETIONS && !(j.object === "text_completion" && j.choices.every((c) => typeof c.text === "string")))
    return "not a text_completion: " + text.slice(0, 200);
  if (!(j.usage && j.usage.completion_tokens <= MAX_TOKENS * (j.choices?.length ?? 1))) return "bad usage: " + text.slice(0, 200);
  return null;
}

// Server-sent events: every event is JSON (or a comment), and the stream ends as OpenAI's do.
function checkStream(route, text, complete) {
  const events = text.split("\n\n");
  if (events.at(-1) !== "") return complete ? "the stream does not end with a blank line" : null;
  let last = null;
  for (const ev of events.slice(0, -1)) {
    for (const line of ev.split("\n")) {
      if (line.startsWith(":") || line.startsWith("event: ")) continue;
      if (!line.startsWith("data: ")) return `not an SSE line: ${line.slice(0, 200)}`;
      const data = line.slice(6);
      if (data === "[DONE]") { last = data; continue; }
      try { last = JSON.parse(data); } catch { return `SSE data is not JSON: ${data.slice(0, 200)}`; }
      if (route === CHAT && last.object !== "chat.completion.chunk") return "not a chunk: " + data.slice(0, 200);
    }
  }
  if (!complete) return null;
  if (route === RESPONSES) return last?.type === "response.completed" ? null : "no response.completed at the end";
  return last === "[DONE]" ? null : "no [DONE] at the end";
}

async function one(rnd, counts, problems) {
  const name = NAMES[Math.floor(rnd() * NAMES.length)];
  const req = KINDS[name](rnd);
  const key = (s) => { counts[`${name} ${s}`] = (counts[`${name} ${s}`] ?? 0) + 1; };
  const controller = new AbortController();
  // Node's fetch can leave a promise unsettled when aborted mid-body: the abort itself ends the wait.
  let timer;
  const aborted = new Promise((resolve) => {
    if (req.abortAfterMs !== undefined) timer = setTimeout(() => { controller.abort(); resolve(null); }, req.abortAfterMs);
  });
  let streamed = false, text = "";
  const ask = async (retry = true) => {
    let r;
    try {
      r = await fetch(srv.base + req.route, { method: "POST", headers: { "Content-Type": "application/json" }, signal: controller.signal,
                                              body: typeof req.body === "string" ? req.body : JSON.stringify(req.body) });
    } catch (e) {
      // A kept-alive connection that the server closed as this request went out (HTTP/1.1's race,
      // which the openai client retries too): once more. A server that resets on this request does so again.
      if (retry && !controller.signal.aborted && /ECONNRESET|other side closed/.test(`${e.cause?.code} ${e.cause?.message}`)) {
        key("retried");
        return ask(false);
      }
      throw e;
    }
    streamed = (r.headers.get("content-type") ?? "").startsWith("text/event-stream");
    const decoder = new TextDecoder();
    for await (const part of r.body) text += decoder.decode(part, { stream: true });
    return r;
  };
  try {
    const r = await Promise.race([ask(), aborted]);
    if (!r) {
      key("aborted");
      if (streamed) { const p = checkStream(req.route, text, false); if (p) problems.push(`${name}: ${p}`); }
      return;
    }
    key(r.status);
    let problem;
    if (req.error) problem = checkError(r.status, text, req.error);
    else if (r.status === 503) {
      problem = checkError(r.status, text, [503]) ?? (r.headers.get("retry-after") ? null : "503 without Retry-After");
    } else if (r.status !== 200) problem = `unexpected ${r.status}: ${text.slice(0, 200)}`;
    else if (req.body.stream) problem = streamed ? checkStream(req.route, text, true) : "a stream without text/event-stream";
    else problem = checkJsonAnswer(req.route, text);
    if (problem) problems.push(`${name}: ${problem}`);
  } catch (e) {
    if (e.name === "AbortError") key("aborted");
    else problems.push(`${name}: ${e.message} ${e.cause?.message ?? ""}`);
  } finally {
    clearTimeout(timer);
  }
}

const metrics = async () => (await fetch(srv.base + "/metrics")).text();

test(`${CLIENTS} clients for ${SECONDS} s of mixed good, cancelled, oversized and malformed requests`, async () => {
  // Warm up (first allocations, thread stacks), then take the baseline.
  await Promise.all(Array.from({ length: 16 }, (_, i) => one(random(1000 + i), {}, [])));
  const rssBefore = srv.rss();
  const counts = {}, problems = [];
  const end = Date.now() + SECONDS * 1000;
  let peak = rssBefore;
  const sampler = setInterval(() => { try { peak = Math.max(peak, srv.rss()); } catch { /* exited: checked below */ } }, 200);
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const rnd = random(c + 1);
    while (Date.now() < end) await one(rnd, counts, problems);
  }));
  clearInterval(sampler);
  assert.equal(srv.proc.exitCode, null, "the server is still running:\n" + srv.stderr());
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} malformed answers of ${JSON.stringify(counts)}`);
  // The mix really happened: every kind was sent, answers and cancellations both.
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  for (const name of NAMES) assert.ok(Object.keys(counts).some((k) => k.startsWith(name + " ")), `${name} was never sent`);
  assert.ok((counts["chat 200"] ?? 0) + (counts["streamChat 200"] ?? 0) > 0, JSON.stringify(counts));
  assert.ok((counts["cancelStream aborted"] ?? 0) > 0, JSON.stringify(counts));
  const rssAfter = srv.rss();
  console.log(`load: ${total} requests, RSS ${(rssBefore / 2 ** 20).toFixed(0)} MB -> peak ${(peak / 2 ** 20).toFixed(0)} MB -> ` +
              `${(rssAfter / 2 ** 20).toFixed(0)} MB; ${JSON.stringify(counts)}`);
  assert.ok(peak - rssBefore < RSS_GROWTH_BOUND, `RSS grew ${((peak - rssBefore) / 2 ** 20).toFixed(0)} MB`);
  // Everything cancelled left the batch and gave back its memory; the server answers as before.
  let text = "";
  for (let i = 0; i < 100; i++) {
    text = await metrics();
    if (metric(text, "phinfer_http_in_flight") === 0 && metric(text, 'phinfer_running_requests{model="phi3-tiny-mha"}') === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const m of ["phi3-tiny-mha", "stories260K-phi3"]) {
    assert.equal(metric(text, `phinfer_running_requests{model="${m}"}`), 0);
    assert.equal(metric(text, `phinfer_queue_length{model="${m}"}`), 0);
    assert.equal(metric(text, `phinfer_kv_cache_bytes{model="${m}"}`), 0);
  }
  assert.equal(metric(text, "phinfer_http_in_flight"), 0);
  assert.equal((await (await fetch(srv.base + "/health")).json()).status, "ok");
  const r = await srv.client.chat.completions.create({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Hi" }],
                                                       temperature: 0, max_tokens: 4 });
  assert.equal(r.usage.completion_tokens, 4);
});
