// response_format through the official openai client: json_object and json_schema (strict) answers
// from a random-weight model parse and follow the schema, streamed or not; bad formats are 400s.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, post, assertOpenAIError } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer(["--ctx-size", "512", "--max-tokens", "300"]); });
after(async () => { const { code } = await srv.stop(); assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr()); });

const schema = {
  type: "object",
  properties: {
    city: { type: "string", minLength: 1, maxLength: 10 },
    days: { type: "integer", minimum: 1, maximum: 7 },
    units: { enum: ["metric", "imperial"] },
  },
  required: ["city", "days", "units"],
  additionalProperties: false,
};
const ask = (extra) => ({ model: "phi3-tiny-mha", messages: [{ role: "user", content: "Weather plan as JSON" }],
                          max_tokens: 200, seed: 7, ...extra });

function checkWeather(text) {
  const v = JSON.parse(text);
  assert.deepEqual(Object.keys(v).sort(), ["city", "days", "units"]);
  assert.ok(typeof v.city === "string" && [...v.city].length >= 1 && [...v.city].length <= 10, text);
  assert.ok(Number.isInteger(v.days) && v.days >= 1 && v.days <= 7, text);
  assert.ok(["metric", "imperial"].includes(v.units), text);
}

test("json_schema (strict): every sampled answer follows the schema", async () => {
  const format = { type: "json_schema", json_schema: { name: "weather", strict: true, schema } };
  const r = await srv.client.chat.completions.create(ask({ response_format: format, n: 4, temperature: 1 }));
  assert.equal(r.choices.length, 4);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, "stop");
    checkWeather(c.message.content);
  }
  // Streamed: the deltas add up to a valid answer too.
  const stream = await srv.client.chat.completions.create(ask({ response_format: format, stream: true }));
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  checkWeather(text);
});

test("json_object: the answer is one JSON object", async () => {
  const r = await srv.client.chat.completions.create(ask({ response_format: { type: "json_object" }, temperature: 0,
                                                           max_tokens: 300 }));
  const c = r.choices[0];
  if (c.finish_reason === "stop") assert.equal(typeof JSON.parse(c.message.content), "object");
  else assert.equal(c.finish_reason, "length");
  assert.equal(c.message.content[0], "{");
});

test("bad response formats are 400 errors naming the problem", async () => {
  let r = await post(srv.base, "/v1/chat/completions", ask({ response_format: { type: "xml" } }));
  assertOpenAIError(assert, r, 400, "response_format");
  assert.match(r.json.error.message, /json_object or json_schema/);
  r = await post(srv.base, "/v1/chat/completions",
                 ask({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "^a" } } } }));
  assertOpenAIError(assert, r, 400, "response_format");
  assert.match(r.json.error.message, /"pattern" is not supported/);
  r = await post(srv.base, "/v1/chat/completions", ask({ response_format: { type: "json_schema" } }));
  assertOpenAIError(assert, r, 400, "response_format");
  assert.match(r.json.error.message, /json_schema/);
});
