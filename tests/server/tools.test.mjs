// Tool calls through the official openai client on Phi-4-mini's tokenizer and chat template
// (phi4-tiny-synth, random weights): a required or named call is always a well-formed call to an
// offered function, streamed or not; a conversation carries calls and results back; bad tools are 400s.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { startServer, post, assertOpenAIError, SHARED } from "./helpers.mjs";

let srv;
const MODEL = "phi4-tiny-synth";
before(async () => {
  srv = await startServer(["-m", path.join(SHARED, "models", MODEL), "--ctx-size", "1024", "--max-tokens", "200"]);
});
after(async () => { const { code } = await srv.stop(); assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr()); });

const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather of a city",
    parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } },
                  required: ["city", "unit"], additionalProperties: false } } },
  { type: "function", function: { name: "add", description: "Adds two numbers",
    parameters: { type: "object", properties: { a: { type: "integer", minimum: 0, maximum: 99 }, b: { type: "integer", minimum: 0, maximum: 99 } },
                  required: ["a", "b"], additionalProperties: false } } },
];
const ask = (extra) => ({ model: MODEL, messages: [{ role: "user", content: "What is 2 + 3?" }], tools, seed: 3, ...extra });

function checkCall(call, only) {
  assert.equal(call.type, "function");
  assert.match(call.id, /^call_/);
  const args = JSON.parse(call.function.arguments);
  if (only) assert.equal(call.function.name, only);
  if (call.function.name === "add") assert.ok(Number.isInteger(args.a) && Number.isInteger(args.b), call.function.arguments);
  else {
    assert.equal(call.function.name, "get_weather");
    assert.ok(typeof args.city === "string" && ["c", "f"].includes(args.unit), call.function.arguments);
  }
}

test("tool_choice required: every sampled answer is a call to an offered function", async () => {
  const r = await srv.client.chat.completions.create(ask({ tool_choice: "required", parallel_tool_calls: false, n: 3, temperature: 1 }));
  assert.equal(r.choices.length, 3);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.tool_calls.length, 1);
    for (const call of c.message.tool_calls) checkCall(call);
  }
});

test("a named function, streamed: the deltas add up to its call", async () => {
  const stream = await srv.client.chat.completions.create(
    ask({ tool_choice: { type: "function", function: { name: "add" } }, parallel_tool_calls: false, stream: true, temperature: 1 }));
  const calls = [];
  let finish = null, content = "";
  for await (const chunk of stream) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    content += ch.delta?.content ?? "";
    for (const d of ch.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: d.id, type: d.type, function: { name: "", arguments: "" } };
      calls[d.index].function.name += d.function?.name ?? "";
      calls[d.index].function.arguments += d.function?.arguments ?? "";
    }
    finish = ch.finish_reason ?? finish;
  }
  assert.equal(finish, "tool_calls");
  assert.equal(content, "", "the call's text is not streamed as content");
  assert.equal(calls.length, 1);
  checkCall(calls[0], "add");
});

test("a conversation carries the call and its result back; auto answers are well-formed", async () => {
  const first = await srv.client.chat.completions.create(ask({ tool_choice: "required", parallel_tool_calls: false, temperature: 0 }));
  const msg = first.choices[0].message;
  const messages = [{ role: "user", content: "What is 2 + 3?" }, msg,
                    ...msg.tool_calls.map((c) => ({ role: "tool", tool_call_id: c.id, content: "5" }))];
  const second = await srv.client.chat.completions.create({ model: MODEL, messages, tools, temperature: 0, max_tokens: 20 });
  const c = second.choices[0];
  assert.ok(["stop", "length", "tool_calls"].includes(c.finish_reason));
  if (c.finish_reason === "tool_calls") for (const call of c.message.tool_calls) checkCall(call);
  else assert.equal(typeof c.message.content, "string");
  // The second prompt holds the first call in the model's syntax and the result in its tool role.
  assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
  const none = await srv.client.chat.completions.create(ask({ tool_choice: "none", max_tokens: 8, temperature: 0 }));
  assert.equal(none.choices[0].message.tool_calls, undefined);
});

test("bad tools and tool choices are 400 errors naming the field", async () => {
  let r = await post(srv.base, "/v1/chat/completions", ask({ tools: [{ type: "function", function: { name: "bad name" } }] }));
  assertOpenAIError(assert, r, 400, "tools");
  assert.match(r.json.error.message, /tools\[0\]\.function\.name/);
  r = await post(srv.base, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], tool_choice: "required" });
  assertOpenAIError(assert, r, 400, "tool_choice");
  r = await post(srv.base, "/v1/chat/completions", ask({ tool_choice: { type: "function", function: { name: "nope" } } }));
  assertOpenAIError(assert, r, 400, "tool_choice");
  r = await post(srv.base, "/v1/chat/completions", ask({ tool_choice: "required", response_format: { type: "json_object" } }));
  assertOpenAIError(assert, r, 400, "tool_choice");
  r = await post(srv.base, "/v1/chat/completions", ask({ messages: [{ role: "user", content: "hi", tool_calls: [] }] }));
  assertOpenAIError(assert, r, 400, "messages");
});
