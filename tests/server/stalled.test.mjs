// Slow and stalled clients (raw sockets: no HTTP client library stalls on purpose): a client that
// sends half a request, or stops reading its stream, is dropped after --timeout and frees its
// worker and its slot, while the server keeps answering the others.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, metric } from "./helpers.mjs";

const TIMEOUT_S = 2;
const WORKERS = 4;
let srv;
before(async () => { srv = await startServer(["--timeout", String(TIMEOUT_S), "--http-threads", String(WORKERS)]); });
after(async () => { const { code } = await srv.stop(); assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr()); });

const metrics = async () => (await fetch(srv.base + "/metrics")).text();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A connection that sends `head` and then nothing; resolves when the server closes it.
function stalledRequest(head) {
  const socket = net.connect(srv.port, "127.0.0.1");
  let received = "";
  socket.on("data", (d) => { received += d; });
  socket.on("error", () => {});  // a reset is a close too
  socket.write(head);
  const start = Date.now();
  return new Promise((resolve) => socket.on("close", () => resolve({ seconds: (Date.now() - start) / 1000, received })));
}

test("clients that send half a request are dropped after --timeout; others are still answered", async () => {
  const body = JSON.stringify({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
  // As many stalled clients as workers: the server answers again only if it drops them.
  const stalled = [];
  for (let i = 0; i < WORKERS; i++)
    stalled.push(stalledRequest(i % 2
      ? "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"          // headers never end
      : "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`));                                // body never ends
  await sleep(300);  // they hold every worker now
  const start = Date.now();
  const r = await srv.client.chat.completions.create({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Hello" }],
                                                       temperature: 0, max_tokens: 4 });
  const waited = (Date.now() - start) / 1000;
  assert.equal(r.choices[0].finish_reason, "length");
  // A stalled read fails after --timeout; the connection's keep-alive wait is no longer.
  const bound = 2 * TIMEOUT_S + 3;
  assert.ok(waited < bound, `answered after ${waited} s, with ${WORKERS} stalled clients (bound ${bound} s)`);
  for (const s of await Promise.all(stalled)) {
    assert.ok(s.seconds >= TIMEOUT_S - 0.5 && s.seconds < bound, `stalled client closed after ${s.seconds} s`);
    // What it did get, if anything, is an OpenAI error (the read timed out).
    if (s.received) assert.match(s.received, /^HTTP\/1\.1 400[^]*\{"error":\{/);
  }
});

test("a client that stops reading its stream is dropped after --timeout and frees its slot", async () => {
  const before = metric(await metrics(), "phinfer_cancelled_total");
  // Eight choices with logprobs: the stream is dense, so the socket's buffers fill within seconds.
  const choices = 8, maxTokens = 3000;
  const body = JSON.stringify({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Tell me a very long story" }],
                                stream: true, n: choices, max_tokens: maxTokens, temperature: 1, seed: 1,
                                logprobs: true, top_logprobs: 5 });
  const socket = net.connect(srv.port, "127.0.0.1");
  let received = 0, closed = false, stalling = true;
  socket.on("data", (d) => {
    received += d.length;
    if (stalling) socket.pause();  // the first bytes came: read nothing more
  });
  socket.on("close", () => { closed = true; });
  socket.on("error", () => {});
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
               `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  // Meanwhile the others are served.
  await sleep(500);
  const r = await srv.client.completions.create({ model: "stories260K-phi3", prompt: "Once upon a time", temperature: 0, max_tokens: 8 });
  assert.equal(r.choices[0].finish_reason, "length");
  let text = "";
  const deadline = Date.now() + 120000;  // filling the buffers takes a few seconds, more on a loaded machine
  while (Date.now() < deadline) {
    text = await metrics();
    if (metric(text, "phinfer_cancelled_total") >= before + choices) break;
    await sleep(200);
  }
  assert.equal(metric(text, "phinfer_cancelled_total"), before + choices, "the stalled stream's choices were cancelled");
  assert.ok(metric(text, "phinfer_generated_tokens_total") < choices * maxTokens, "cancelled, not run to the end");
  assert.equal(metric(text, 'phinfer_running_requests{model="phi3-tiny-mha"}'), 0);
  assert.equal(metric(text, 'phinfer_kv_cache_bytes{model="phi3-tiny-mha"}'), 0);
  assert.equal(metric(text, "phinfer_http_in_flight"), 0);
  assert.ok(received > 0, "the stream had started");
  // The server closed the connection: what was buffered drains, then the socket ends.
  stalling = false;
  socket.resume();
  for (let i = 0; i < 100 && !closed; i++) await sleep(50);
  assert.ok(closed, "the server closed the stalled connection");
});
