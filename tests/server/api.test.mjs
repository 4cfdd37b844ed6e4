// The OpenAI API of `phinfer serve` through the official openai client: shapes, sampling fields,
// streaming, and the error objects of bad requests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, post, metric, assertOpenAIError } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer(["--ctx-size", "256", "--max-tokens", "200"]); });
after(async () => { const { code } = await srv.stop(); assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr()); });

const chat = (extra = {}) => ({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Hello there" }],
                                temperature: 0, max_tokens: 12, ...extra });

test("models and health", async () => {
  const models = [];
  for await (const m of srv.client.models.list()) models.push(m.id);
  assert.deepEqual(models, ["phi3-tiny-mha", "stories260K-phi3"]);
  const health = await (await fetch(srv.base + "/health")).json();
  assert.equal(health.status, "ok");
});

test("chat completion: shape, usage, length", async () => {
  const r = await srv.client.chat.completions.create(chat());
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "phi3-tiny-mha");
  assert.equal(typeof r.created, "number");
  assert.equal(typeof r.system_fingerprint, "string");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 12);
  assert.ok(r.usage.prompt_tokens > 3);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 12);
  // Text parts are the same message as a string.
  const parts = await srv.client.chat.completions.create(chat({
    messages: [{ role: "user", content: [{ type: "text", text: "Hello " }, { type: "text", text: "there" }] }] }));
  assert.equal(parts.choices[0].message.content, r.choices[0].message.content);
});

test("streamed chat equals the non-streamed one, with usage", async () => {
  const whole = await srv.client.chat.completions.create(chat());
  const stream = await srv.client.chat.completions.create(chat({ stream: true, stream_options: { include_usage: true } }));
  let text = "", finish = null, usage = null, roles = 0, id = null;
  for await (const c of stream) {
    assert.equal(c.object, "chat.completion.chunk");
    id ??= c.id;
    assert.equal(c.id, id, "one id for all chunks");
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta.role) roles++;
      text += ch.delta.content ?? "";
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(roles, 1);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, "length");
  assert.deepEqual(usage, whole.usage);
  // The raw stream ends with OpenAI's sentinel.
  const raw = await post(srv.base, "/v1/chat/completions", chat({ stream: true }));
  assert.match(raw.headers.get("content-type"), /text\/event-stream/);
  assert.ok(raw.text.trimEnd().endsWith("data: [DONE]"));
});

test("n=2 samples with a seed: two choices, reproducible", async () => {
  const ask = () => srv.client.chat.completions.create(chat({ n: 2, temperature: 1, seed: 7 }));
  const [a, b] = [await ask(), await ask()];
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1]);
  assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
  assert.notEqual(a.choices[0].message.content, a.choices[1].message.content, "each choice samples its own stream");
  assert.equal(a.usage.completion_tokens, 24);
});

test("stop string ends the answer before it", async () => {
  const r = await srv.client.completions.create({ model: "stories260K-phi3", prompt: "Once upon a time", max_tokens: 60, temperature: 0 });
  const text = r.choices[0].text;
  const at = text.indexOf(" ", 10);
  assert.ok(at > 0, text);
  const stop = text.slice(at, at + 4);
  const s = await srv.client.completions.create({ model: "stories260K-phi3", prompt: "Once upon a time", max_tokens: 60,
                                                  temperature: 0, stop: [stop, "zzzz"] });
  assert.equal(s.choices[0].text, text.slice(0, text.indexOf(stop)));
  assert.equal(s.choices[0].finish_reason, "stop");
});

test("chat logprobs: tokens add up to the content, alternatives sorted", async () => {
  const r = await srv.client.chat.completions.create(chat({ logprobs: true, top_logprobs: 3 }));
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 12);
  assert.equal(lp.map((t) => t.token).join(""), r.choices[0].message.content);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.top_logprobs[0].logprob, t.logprob, "greedy picks the most likely");
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i].logprob <= t.top_logprobs[i - 1].logprob);
  }
});

test("alternatives past the tokenizer (the embedding's padding rows) have no text, streamed or not", async () => {
  // The synthetic model's lm_head has 32064 rows for 32011 tokens: sampling ranks padding rows too
  // (this sample at its token 338: more room than this file's server gives).
  const roomy = await startServer(["--max-tokens", "400"]);
  try {
    const body = chat({ messages: [{ role: "user", content: "Tell me a very long story" }], temperature: 1, seed: 3,
                        max_tokens: 340, logprobs: true, top_logprobs: 20 });
    const r = await roomy.client.chat.completions.create(body);
    const empty = (t) => t.token === "" && t.bytes.length === 0;
    const alternatives = r.choices.flatMap((c) => c.logprobs.content.flatMap((t) => t.top_logprobs));
    assert.ok(alternatives.some(empty), "this request ranks a padding row among its alternatives");
    let streamed = 0, done = 0;
    for await (const c of await roomy.client.chat.completions.create({ ...body, stream: true })) {
      for (const ch of c.choices) {
        streamed += (ch.logprobs?.content ?? []).flatMap((t) => t.top_logprobs).filter(empty).length;
        if (ch.finish_reason) done++;
      }
    }
    assert.equal(done, 1);
    assert.ok(streamed > 0);
  } finally {
    assert.equal((await roomy.stop()).code, 0);
  }
});

test("completions: list of prompts, echo, logprobs, stream", async () => {
  const r = await srv.client.completions.create({ model: "stories260K-phi3", prompt: ["Once upon a time", "The cat"],
                                                  max_tokens: 8, temperature: 0, echo: true, logprobs: 2 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices.length, 2);
  assert.ok(r.choices[0].text.startsWith("Once upon a time"));
  assert.ok(r.choices[1].text.startsWith("The cat"));
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 8);
  assert.equal(lp.text_offset[0], "Once upon a time".length);
  assert.equal("Once upon a time" + lp.tokens.join(""), r.choices[0].text);
  assert.equal(Object.keys(lp.top_logprobs[0]).length, 2);
  const stream = await srv.client.completions.create({ model: "stories260K-phi3", prompt: "Once upon a time", max_tokens: 8,
                                                       temperature: 0, stream: true });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.text ?? "";
  assert.equal("Once upon a time" + text, r.choices[0].text);
});

test("responses: input and instructions, streamed events", async () => {
  const r = await srv.client.responses.create({ model: "phi3-tiny-mha", input: "Hello there", instructions: "Be brief",
                                                max_output_tokens: 6, temperature: 0 });
  assert.equal(r.object, "response");
  assert.equal(r.status, "incomplete");
  assert.equal(r.incomplete_details.reason, "max_output_tokens");
  assert.equal(r.usage.output_tokens, 6);
  assert.ok(r.output_text.length > 0);
  const stream = await srv.client.responses.create({ model: "phi3-tiny-mha", input: [{ role: "system", content: "Be brief" },
    { role: "user", content: [{ type: "input_text", text: "Hello there" }] }], max_output_tokens: 6, temperature: 0, stream: true });
  let text = "", types = [], seq = [];
  for await (const e of stream) {
    types.push(e.type); seq.push(e.sequence_number);
    if (e.type === "response.output_text.delta") text += e.delta;
    if (e.type === "response.completed") assert.equal(e.response.output_text ?? e.response.output[0].content[0].text, r.output_text);
  }
  assert.equal(text, r.output_text);
  assert.equal(types[0], "response.created");
  assert.equal(types.at(-1), "response.completed");
  assert.deepEqual(seq, seq.map((_, i) => i), "sequence numbers count up");
});

test("bad requests get OpenAI error objects", async () => {
  const bad = async (body, status, param, route = "/v1/chat/completions") =>
    assertOpenAIError(assert, await post(srv.base, route, body), status, param);
  await bad("{not json", 400);
  await bad("[1,2]", 400);
  await bad(chat({ model: "no-such-model" }), 404, "model");
  await bad(chat({ tools: [{ type: "function" }] }), 400, "tools");
  await bad(chat({ temperature: "hot" }), 400, "temperature");
  await bad(chat({ temperature: 3 }), 400, "temperature");
  await bad(chat({ max_tokens: -1 }), 400, "max_tokens");
  await bad(chat({ max_tokens: 100000 }), 400, "max_tokens");
  await bad(chat({ n: 0 }), 400, "n");
  await bad(chat({ stop: [1] }), 400, "stop");
  await bad(chat({ messages: [] }), 400, "messages");
  await bad(chat({ messages: [{ role: "wizard", content: "x" }] }), 400, "messages");
  await bad(chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }), 400, "content");
  await bad(chat({ messages: [{ role: "user", content: "word ".repeat(400) }] }), 400, "messages");  // > --ctx-size 256
  await bad({ model: "stories260K-phi3", messages: [{ role: "user", content: "hi" }] }, 400, "messages");  // no chat template
  await bad({ model: "stories260K-phi3", prompt: 5 }, 400, "prompt", "/v1/completions");
  await bad({ model: "phi3-tiny-mha" }, 400, "input", "/v1/responses");
  assertOpenAIError(assert, { ...(await fetch(srv.base + "/v1/nothing")), json: null, text: "" } && await (async () => {
    const r = await fetch(srv.base + "/v1/nothing"); const text = await r.text(); return { status: r.status, text, json: JSON.parse(text) };
  })(), 404);
  // The client library surfaces them as APIError with the server's message.
  await assert.rejects(srv.client.chat.completions.create(chat({ model: "nope" })),
                       (e) => e.status === 404 && /nope/.test(e.message));
  // Metadata is accepted.
  const ok = await post(srv.base, "/v1/chat/completions", chat({ user: "someone", metadata: { a: "b" } }));
  assert.equal(ok.status, 200, ok.text);
});

test("metrics count requests and tokens", async () => {
  const text = await (await fetch(srv.base + "/metrics")).text();
  assert.ok(metric(text, 'phinfer_requests_total{endpoint="/v1/chat/completions",status="200"}') > 0);
  assert.ok(metric(text, 'phinfer_requests_total{endpoint="/v1/chat/completions",status="400"}') > 0);
  assert.ok(metric(text, "phinfer_generated_tokens_total") > 0);
  assert.ok(metric(text, "phinfer_time_to_first_token_seconds_count") > 0);
  assert.equal(metric(text, 'phinfer_running_requests{model="phi3-tiny-mha"}'), 0);
  assert.match(text, /# TYPE phinfer_time_per_output_token_seconds histogram/);
  assert.match(text, /phinfer_kv_cache_bytes\{model="stories260K-phi3"\} 0/);
});

test("the chat page is served from the binary and renders output as text", async () => {
  const r = await fetch(srv.base + "/");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /text\/html/);
  const html = await r.text();
  assert.match(html, /<title>phinfer chat<\/title>/);
  assert.ok(!/innerHTML/.test(html), "model output is never parsed as HTML");
});

test("an API key is required when set, compared exactly", async () => {
  const keyed = await startServer([], { apiKey: "s3cret" });
  try {
    const r = await keyed.client.chat.completions.create(chat({ max_tokens: 2 }));
    assert.equal(r.choices.length, 1);
    for (const auth of [undefined, "Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "s3cret"])
      assertOpenAIError(assert, await post(keyed.base, "/v1/chat/completions", chat(), auth ? { Authorization: auth } : {}), 401);
    assert.equal((await fetch(keyed.base + "/health")).status, 200, "health stays open for load balancers");
  } finally {
    assert.equal((await keyed.stop()).code, 0);
  }
});
