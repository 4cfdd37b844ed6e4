// The web chat page at `/` in headless Chromium (Debian's, driven by puppeteer-core; no browser
// download): an answer streams in, the stop button stops one, a reload finds the conversation in
// local storage, and HTML in model output is shown as text, never run.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import puppeteer from "puppeteer-core";
import { startServer, metric } from "./helpers.mjs";

const CHROMIUM = process.env.PHINFER_CHROMIUM || "/usr/bin/chromium";
if (!existsSync(CHROMIUM))
  throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (scripts/install-deps.sh) or set PHINFER_CHROMIUM`);

const MODEL = "phi3-tiny-mha";
let srv, browser, page;
const pageErrors = [];
before(async () => {
  srv = await startServer(["--max-tokens", "300"]);
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true,
                                     args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(srv.base + "/");
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0);
});
after(async () => {
  await browser?.close();
  assert.deepEqual(pageErrors, [], "the page threw");
  const { code } = await srv.stop();
  assert.equal(code, 0, "clean exit on SIGTERM:\n" + srv.stderr());
});

// What the API answers without streaming, for the page's greedy request (it sends no max_tokens).
async function apiAnswer(messages) {
  const r = await srv.client.chat.completions.create({ model: MODEL, messages, temperature: 0 });
  return r.choices[0].message.content;
}

// Records every text the last answer box shows, until the page is ready to send again.
async function sendAndWatch(text, { stopAfterChars } = {}) {
  await page.evaluate(() => {
    window.__seen = [];
    const log = document.getElementById("log");
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      const box = log.lastChild?.querySelector(".text");
      if (box && window.__seen.at(-1) !== box.textContent) window.__seen.push(box.textContent);
    });
    window.__observer.observe(log, { childList: true, subtree: true, characterData: true });
  });
  await page.type("#input", text);
  await page.click("#send");
  if (stopAfterChars !== undefined) {
    await page.waitForFunction((n) => window.__seen.some((t) => t.length >= n), {}, stopAfterChars);
    await page.click("#stop");
  }
  await page.waitForFunction(() => !document.getElementById("send").disabled && document.getElementById("stop").disabled,
                             { timeout: 120000 });
  return page.evaluate(() => window.__seen);
}

const shown = () => page.$$eval("#log .msg", (ms) => ms.map((m) => ({ role: m.classList[1], text: m.querySelector(".text").textContent,
                                                                     speed: m.querySelector(".speed")?.textContent ?? null })));

test("an answer streams in and equals the API's", async () => {
  const seen = await sendAndWatch("Hello there");
  const expected = await apiAnswer([{ role: "user", content: "Hello there" }]);
  assert.ok(expected.length > 20, "a long enough answer to stream: " + expected);
  const messages = await shown();
  assert.equal(messages.length, 2);
  assert.deepEqual(messages[0], { role: "user", text: "Hello there", speed: null });
  assert.equal(messages[1].role, "assistant");
  assert.equal(messages[1].text, expected);
  assert.match(messages[1].speed, /tokens\/s, first token [\d.]+ s$/);
  // It grew piece by piece, each a prefix of the whole.
  const partial = seen.filter((t) => t.length > 0 && t.length < expected.length);
  assert.ok(partial.length >= 3, `seen ${seen.length} states`);
  for (const t of partial) assert.ok(expected.startsWith(t));
});

test("the stop button stops an answer and frees its slot", async () => {
  const history = [{ role: "user", content: "Hello there" }, { role: "assistant", content: await apiAnswer([{ role: "user", content: "Hello there" }]) },
                   { role: "user", content: "Tell me a long story" }];
  const full = await apiAnswer(history);
  assert.ok(full.length > 100, "a long answer to stop: " + full);
  const cancelledBefore = metric(await (await fetch(srv.base + "/metrics")).text(), "phinfer_cancelled_total");
  await sendAndWatch("Tell me a long story", { stopAfterChars: 5 });
  const last = (await shown()).at(-1);
  assert.equal(last.role, "assistant");
  assert.ok(last.text.length >= 5 && last.text.length < full.length, `stopped at ${last.text.length} of ${full.length} chars`);
  assert.ok(full.startsWith(last.text));
  assert.match(last.speed, /\(stopped\)$/);
  let text = "";
  for (let i = 0; i < 100; i++) {
    text = await (await fetch(srv.base + "/metrics")).text();
    if (metric(text, `phinfer_running_requests{model="${MODEL}"}`) === 0 && metric(text, "phinfer_cancelled_total") > cancelledBefore) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(metric(text, "phinfer_cancelled_total"), cancelledBefore + 1, "the server cancelled the stopped answer");
  assert.equal(metric(text, `phinfer_kv_cache_bytes{model="${MODEL}"}`), 0);
});

test("a reload finds the conversation", async () => {
  const before = await shown();
  assert.equal(before.length, 4);
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0);
  assert.deepEqual(await shown(), before);
  const titles = await page.$$eval("#convs button", (bs) => bs.map((b) => b.textContent));
  assert.deepEqual(titles, ["Hello there"]);
});

const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b onmouseover="window.__pwned=3">bold</b>';

test("HTML in stored messages is shown as text, never run", async () => {
  // A conversation as the page stores it, with markup where the page puts model output and titles.
  await page.evaluate((hostile) => {
    const convs = JSON.parse(localStorage.getItem("phinfer.conversations") || "[]");
    convs.unshift({ id: "hostile", title: hostile, system: hostile,
                    messages: [{ role: "user", content: hostile }, { role: "assistant", content: hostile, speed: hostile }] });
    localStorage.setItem("phinfer.conversations", JSON.stringify(convs));
  }, HOSTILE);
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0);
  await new Promise((r) => setTimeout(r, 300));  // an <img src=x> would have failed to load by now
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const messages = await shown();
  assert.deepEqual(messages, [{ role: "user", text: HOSTILE, speed: null }, { role: "assistant", text: HOSTILE, speed: HOSTILE }]);
  assert.equal(await page.$$eval("#log img, #log script, #log b, #convs img", (e) => e.length), 0);
  assert.equal(await page.$eval("#convs button", (b) => b.textContent), HOSTILE);
});

test("HTML in a streamed answer is shown as text, never run", async () => {
  // The model cannot be made to say this, so the answer comes from a stand-in server response that
  // takes the page's own streaming path.
  const pieces = ['<img src=x one', 'rror="window.__pwned=4">', "<script>window.__pwned=5</scr", "ipt>", " done"];
  const sse = pieces.map((p) => `data: ${JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: p } }] })}\n\n`)
                    .join("") + "data: [DONE]\n\n";
  await page.setRequestInterception(true);
  const intercept = (req) => {
    if (req.method() === "POST" && req.url().endsWith("/v1/chat/completions"))
      req.respond({ status: 200, contentType: "text/event-stream", body: sse });
    else req.continue();
  };
  page.on("request", intercept);
  try {
    await page.click("#new");
    await sendAndWatch("Say some HTML");
  } finally {
    page.off("request", intercept);
    await page.setRequestInterception(false);
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const last = (await shown()).at(-1);
  assert.equal(last.text, pieces.join(""));
  assert.equal(await page.$$eval("#log img, #log script", (e) => e.length), 0);
});
