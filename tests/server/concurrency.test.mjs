// Continuous batching through the API: concurrent requests give exactly what they give alone; a
// client that leaves frees its slot.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, post, metric } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer(["--parallel", "16"]); });
after(async () => { await srv.stop(); });

const metrics = async (s = srv) => (await fetch(s.base + "/metrics")).text();

// Greedy requests of different prompts and lengths, with the tokens of each answer (logprobs).
function requests() {
  const out = [];
  for (let i = 0; i < 16; i++) {
    if (i % 2)
      out.push(["chat", { model: "phi3-tiny-mha", messages: [{ role: "user", content: `Question number ${i}: why?` }],
                          temperature: 0, max_tokens: 8 + i * 3, logprobs: true }]);
    else
      out.push(["completions", { model: "stories260K-phi3", prompt: `Once upon a time ${"there was ".repeat(i)}a`,
                                 temperature: 0, max_tokens: 10 + i * 4, logprobs: 0 }]);
  }
  return out;
}
async function answer([kind, body]) {
  if (kind === "chat") {
    const r = await srv.client.chat.completions.create(body);
    return { text: r.choices[0].message.content, tokens: r.choices[0].logprobs.content.map((t) => t.token), finish: r.choices[0].finish_reason };
  }
  const r = await srv.client.completions.create(body);
  return { text: r.choices[0].text, tokens: r.choices[0].logprobs.tokens, finish: r.choices[0].finish_reason };
}

test("16 concurrent greedy requests answer exactly as one at a time", async () => {
  const alone = [];
  for (const r of requests()) alone.push(await answer(r));
  const together = await Promise.all(requests().map(answer));
  assert.deepEqual(together, alone);
  assert.ok(alone.some((a) => a.tokens.length > 20));
});

test("a client that disconnects mid-stream frees its slot", async () => {
  const before = metric(await metrics(), "phinfer_cancelled_total");
  const controller = new AbortController();
  const stream = await srv.client.chat.completions.create(
    { model: "phi3-tiny-mha", messages: [{ role: "user", content: "Tell me a very long story" }], temperature: 1, seed: 3,
      max_tokens: 4000, stream: true }, { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) {
      // The client aborts and stops reading (chunks already buffered would otherwise still arrive).
      if (++chunks === 3) { controller.abort(); break; }
    }
  } catch (e) {
    assert.equal(e.name, "AbortError");
  }
  assert.equal(chunks, 3);
  let text = "";
  for (let i = 0; i < 100; i++) {  // within 5 s
    text = await metrics();
    if (metric(text, 'phinfer_running_requests{model="phi3-tiny-mha"}') === 0 && metric(text, "phinfer_cancelled_total") > before) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(metric(text, 'phinfer_running_requests{model="phi3-tiny-mha"}'), 0);
  assert.equal(metric(text, "phinfer_cancelled_total"), before + 1, "the request was cancelled, not finished");
  assert.equal(metric(text, 'phinfer_kv_cache_bytes{model="phi3-tiny-mha"}'), 0);
  assert.equal(metric(text, "phinfer_http_in_flight"), 0);
});
