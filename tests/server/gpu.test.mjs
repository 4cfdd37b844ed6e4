// `phinfer serve --device gpu` (the Vulkan backend; Mesa's lavapipe in CI): concurrent greedy chat
// completions, batched on the GPU, answer exactly what the CPU server answers; /health names the device.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, MHA } from "./helpers.mjs";

const servers = [];
after(async () => {
  for (const s of servers) {
    const { code } = await s.stop();
    assert.equal(code, 0, "clean exit on SIGTERM:\n" + s.stderr());
  }
});

const questions = ["Hi", "What is the capital of France?", "Count to five.", "Name a color."];

async function answers(srv) {
  // All at once: the engine runs them as one batch (continuous batching).
  return Promise.all(questions.map((q) => srv.client.chat.completions.create({
    model: "phi3-tiny-mha", messages: [{ role: "user", content: q }], max_tokens: 12, temperature: 0,
  }).then((r) => r.choices[0].message.content)));
}

test("greedy answers on the GPU equal the CPU's, batched", async () => {
  const gpu = await startServer(["--device", "gpu", "--ctx-size", "256"]);
  servers.push(gpu);
  const cpu = await startServer(["--device", "cpu", "--ctx-size", "256"]);
  servers.push(cpu);
  const [g, c] = [await answers(gpu), await answers(cpu)];
  assert.deepEqual(g, c);
  for (const a of g) assert.ok(a.length > 0);
});

test("an unknown GPU is refused before the server starts", async () => {
  await assert.rejects(startServer(["--device", "gpu:99"]), /gpu:99 does not exist/);
});
