// The phinfer command line as other tools use it: output shapes, exit codes and error messages.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sys/wait.h>

#include "test_util.h"

namespace phinfer {
namespace {

struct RunResult {
  int status = -1;
  std::string out, err;
};

// Runs the phinfer binary with arguments (shell-quoted by the caller) and optional stdin text.
RunResult run_cli(const std::string& args, const std::string& stdin_text = "") {
  static int counter = 0;
  static const auto dir = test::temp_dir("cli_io");
  const std::string tag = std::to_string(::getpid()) + "_" + std::to_string(counter++);
  auto in = dir / ("in_" + tag), err = dir / ("err_" + tag);
  std::ofstream(in) << stdin_text;
  std::string cmd = std::string(PHINFER_CLI_PATH) + " " + args + " <" + in.string() + " 2>" + err.string();
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 65536> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  return r;
}

std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

TEST(Cli, GenerateJsonOnStories260KMatchesGolden) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto golden = test::read_json(dir / "golden.json");
  const auto& p = golden["prompts"][1];
  auto r = run_cli("generate -m " + q(dir) + " -p '" + p["prompt"].get<std::string>() + "' --max-new-tokens 64 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_ids"], p["prompt_ids"]);
  EXPECT_EQ(j["output_ids"], p["greedy_ids"]);
  EXPECT_EQ(j["text"], p["greedy_text"]);
  EXPECT_EQ(j["stats"]["prompt_tokens"], p["prompt_ids"].size());
  EXPECT_EQ(j["stats"]["generated_tokens"], 64);
  EXPECT_GT(j["stats"]["ttft_ms"].get<double>(), 0.0);
  EXPECT_GT(j["stats"]["decode_tokens_per_s"].get<double>(), 0.0);
}

TEST(Cli, GenerateStreamsText) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto golden = test::read_json(dir / "golden.json");
  const auto& p = golden["prompts"][1];
  auto r = run_cli("generate -m " + q(dir) + " --prompt-ids " + join(p["prompt_ids"].get<std::vector<int32_t>>()) +
                   " --max-new-tokens 64");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, p["greedy_text"].get<std::string>() + "\n");
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
}

TEST(Cli, GenerateChatUsesTheTemplate) {
  auto dir = test::shared_path("models/phi3-tiny-mha");
  auto r = run_cli("generate -m " + q(dir) + " --chat --system 'You are a helpful assistant.' -p 'How to explain Internet for a medical professional?' --max-new-tokens 4 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  // The 4k template drops the system message: <s><|user|>\n...<|end|>\n<|assistant|>\n
  auto ids = j["prompt_ids"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 32010);
  EXPECT_EQ(ids[ids.size() - 2], 32007);
  EXPECT_EQ(ids.back(), 32001);
}

TEST(Cli, TokenizeAndDetokenize) {
  auto dir = test::shared_path("data/phi3-mini-4k-instruct");
  auto r = run_cli("tokenize -m " + q(dir) + " 'Hello world'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({1, 15043, 3186}));
  r = run_cli("tokenize -m " + q(dir) + " --no-special 'Hello world'");
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({15043, 3186}));
  r = run_cli("tokenize -m " + q(dir) + " --jsonl", "{\"text\": \"Hello world\"}\n{\"text\": \"hello\"}\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"ids\":[1,15043,3186]}\n{\"ids\":[1,22172]}\n");
  r = run_cli("tokenize -m " + q(dir) + " --jsonl", "{\"text\": 3}\n");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
  r = run_cli("detokenize -m " + q(dir) + " 1,15043,3186");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "<s> Hello world\n");
}

TEST(Cli, LogitsMatchGolden) {
  auto dir = test::shared_path("models/phi3-tiny-mha");
  auto golden = test::read_json(dir / "golden.json");
  const auto& c = golden["cases"][0];
  auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
  auto r = run_cli("logits -m " + q(dir) + " --prompt-ids " + join(ids));
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const auto& last = j["logits"][std::to_string(ids.size() - 1)];
  ASSERT_EQ(last.size(), 32064u);
  double err = 0;
  for (size_t i = 0; i < last.size(); ++i) err = std::max(err, std::abs(last[i].get<double>() - c["last_logits"][i].get<double>()));
  EXPECT_LT(err, 1e-3);
  r = run_cli("logits -m " + q(dir) + " --prompt-ids 1,2,3 --positions 0,2");
  ASSERT_EQ(r.status, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["logits"].contains("0"));
  EXPECT_TRUE(j["logits"].contains("2"));
  EXPECT_EQ(j["logits"].size(), 2u);
  r = run_cli("logits -m " + q(dir) + " --prompt-ids 1,2,3 --positions all");
  EXPECT_EQ(nlohmann::json::parse(r.out)["logits"].size(), 3u);
}

TEST(Cli, ClearErrors) {
  auto r = run_cli("generate -m /nonexistent/model -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;
  auto dir = test::shared_path("models/phi3-tiny-mha");
  r = run_cli("generate -m " + q(dir) + " --prompt-ids 1,x,3");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--prompt-ids"), std::string::npos) << r.err;
  r = run_cli("generate -m " + q(dir) + " --prompt-ids 1,40000");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("40000"), std::string::npos) << r.err;
  r = run_cli("generate -m " + q(dir) + " -p hi --sliding-window sideways");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--sliding-window"), std::string::npos) << r.err;
  r = run_cli("generate -m " + q(dir));
  EXPECT_EQ(r.status, 1);
  r = run_cli("logits -m " + q(dir) + " --prompt-ids 1,2 --positions 5");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("position 5"), std::string::npos) << r.err;
  r = run_cli("frobnicate");
  EXPECT_NE(r.status, 0);
}

TEST(Cli, MakeSyntheticTinyThenGenerate) {
  auto out = test::temp_dir("cli_synthetic");
  auto r = run_cli("make-synthetic --preset tiny --out " + q(out / "m") + " --seed 3");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(out / "m" / f)) << f;
  r = run_cli("generate -m " + q(out / "m") + " --chat -p 'Hello there' --max-new-tokens 8 --do-sample --seed 5 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["stats"]["generated_tokens"].get<int>(), 1);
  auto again = nlohmann::json::parse(run_cli("generate -m " + q(out / "m") + " --chat -p 'Hello there' --max-new-tokens 8 --do-sample --seed 5 --json").out);
  EXPECT_EQ(j["output_ids"], again["output_ids"]);
  r = run_cli("make-synthetic --preset huge --out " + q(out / "x"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("huge"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace phinfer

namespace phinfer {
namespace {

TEST(Cli, BenchRunsOnATinyModelAndReportsEveryKey) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto chart = test::temp_dir("cli_bench") / "latency.svg";
  auto r = run_cli("bench -m " + q(dir) + " -p 16 -n 8 -r 2 --threads 1 --json --chart " + q(chart));
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"load_ms", "ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes",
                          "weight_bytes_per_token", "read_bandwidth_gb_s", "decode_bandwidth_use", "int8_peak_gops",
                          "prefill_compute_use"})
    EXPECT_TRUE(j.contains(key)) << key;
  for (const char* key : {"p50", "p90", "p99"}) EXPECT_GT(j["per_token_ms"][key].get<double>(), 0.0) << key;
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["read_bandwidth_gb_s"].get<double>(), 0.0);
  EXPECT_GT(j["int8_peak_gops"].get<double>(), 0.0);
  // stories260K: 5 layers x (qkv 128x64 + o 64x64 + gate_up 344x64 + down 64x172) + lm_head 512x64, fp32.
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), (5u * (128 * 64 + 64 * 64 + 344 * 64 + 64 * 172) + 512 * 64) * 4u);
  // Its f32 KV cache: 5 layers x (keys + values) x 4 kv heads x 8 dims x 4 bytes = 1280 bytes a position. The
  // timed decode steps read positions 0..16 up to 0..22: 20 positions on average.
  EXPECT_DOUBLE_EQ(j["kv_bytes_per_token"].get<double>(), 20.0 * 1280);
  EXPECT_GT(j["decode_bandwidth_use_with_kv"].get<double>(), j["decode_bandwidth_use"].get<double>());
  std::ifstream svg(chart);
  std::string text((std::istreambuf_iterator<char>(svg)), {});
  EXPECT_NE(text.find("<polyline"), std::string::npos);
}

TEST(Cli, BenchParallelReportsTheConcurrentSequencesCurve) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto chart = test::temp_dir("cli_bench_parallel") / "parallel.svg";
  auto r = run_cli("bench -m " + q(dir) + " -p 8 -n 4 -r 1 --threads 1 --parallel 1,2,4 --parallel-prompt-tokens 8 --json --chart " +
                   q(chart));
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["parallel"].is_array());
  ASSERT_EQ(j["parallel"].size(), 3u);
  int expected[] = {1, 2, 4};
  for (size_t i = 0; i < 3; ++i) {
    const auto& p = j["parallel"][i];
    EXPECT_EQ(p["sequences"].get<int>(), expected[i]);
    for (const char* key : {"decode_tokens_per_s", "per_sequence_decode_tokens_per_s", "prefill_tokens_per_s"})
      EXPECT_GT(p[key].get<double>(), 0.0) << key;
    EXPECT_NEAR(p["per_sequence_decode_tokens_per_s"].get<double>() * expected[i], p["decode_tokens_per_s"].get<double>(), 1e-6);
  }
  std::ifstream svg(chart);
  std::string text((std::istreambuf_iterator<char>(svg)), {});
  EXPECT_NE(text.find("concurrent sequences"), std::string::npos);
  EXPECT_NE(run_cli("bench -m " + q(dir) + " --parallel 0").status, 0);
  // A device that is not there is a clear error before any work.
  auto bad = run_cli("bench -m " + q(dir) + " --device gpu:3");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("gpu:3"), std::string::npos) << bad.err;
  bad = run_cli("bench -m " + q(dir) + " --device npu");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("device 'npu' is not a device name: expected cpu, gpu, gpu:N or auto"), std::string::npos) << bad.err;
}

TEST(Cli, ConvertThenRunTheModelFile) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto out = test::temp_dir("cli_convert");
  auto r = run_cli("convert -m " + q(dir) + " -o " + q(out / "s.phi") + " --weight-format int4 --group-size 32 --ratio 0.5 --sym");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("bits per weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("int4 g32 sym"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("int8 per-channel asym"), std::string::npos) << r.out;
  r = run_cli("generate -m " + q(out / "s.phi") + " -p 'Once upon a time' --max-new-tokens 16 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["output_ids"].size(), 16u);
  r = run_cli("tokenize -m " + q(out / "s.phi") + " 'Once upon a time'");
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({1, 403, 407, 261, 378}));
  // On the fly with a cache: the second run starts from the cached file.
  auto cache = out / "cache";
  for (int i = 0; i < 2; ++i) {
    r = run_cli("generate -m " + q(dir) + " --weight-format int8 --cache-dir " + q(cache) + " -p 'Lily' --max-new-tokens 4 --json");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  int cached_models = 0;  // one model file (beside it, the marker of its verification)
  for (const auto& e : std::filesystem::directory_iterator(cache)) cached_models += e.path().extension() == ".phi";
  EXPECT_EQ(cached_models, 1);
  r = run_cli("perplexity -m " + q(out / "s.phi") + " -f " + q(out / "missing.txt"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("missing.txt"), std::string::npos);
  std::ofstream(out / "text.txt") << "Once upon a time, there was a little girl named Lily. She loved to play outside.\n";
  r = run_cli("compare -m " + q(out / "s.phi") + " --ref " + q(dir) + " -f " + q(out / "text.txt") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["top1_agreement"].get<double>(), 0.5);
  EXPECT_GE(j["mean_kl"].get<double>(), 0.0);
}

TEST(Cli, SpeculativeWithADraftModelGivesThePlainGreedyText) {
  auto dir = test::shared_path("models/stories260K-phi3");
  auto out = test::temp_dir("cli_draft");
  auto r = run_cli("convert -m " + q(dir) + " -o " + q(out / "draft.phi") + " --weight-format int4 --plain-rounding");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string gen = "generate -m " + q(dir) + " -p 'Once upon a time, there was a little girl named Lily.' --max-new-tokens 40 --json";
  r = run_cli(gen);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto plain = nlohmann::json::parse(r.out);
  r = run_cli(gen + " --speculative " + q("draft:" + (out / "draft.phi").string()) + " --draft-tokens 5");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto spec = nlohmann::json::parse(r.out);
  EXPECT_EQ(spec["output_ids"], plain["output_ids"]);
  EXPECT_EQ(spec["text"], plain["text"]);
  EXPECT_GT(spec["stats"]["draft_tokens"].get<int64_t>(), 0);
  EXPECT_GT(spec["stats"]["accepted_draft_tokens"].get<int64_t>(), 0);
  // A folder as the draft is converted with the target's --weight-format (here both int8).
  r = run_cli(gen + " --weight-format int8 --cache-dir " + q(out / "cache") + " --speculative " + q("draft:" + dir.string()));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto int8 = nlohmann::json::parse(r.out);
  EXPECT_EQ(int8["stats"]["accepted_draft_tokens"], int8["stats"]["draft_tokens"]) << "a draft identical to the model";
  r = run_cli(gen + " --speculative draft");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("ngram or draft:MODEL"), std::string::npos) << r.err;
  r = run_cli("generate -m " + q(test::shared_path("models/phi3-tiny-mha")) + " -p 'Hi' --speculative " + q("draft:" + dir.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("does not share the vocabulary"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace phinfer

#if PHINFER_HAVE_VULKAN
namespace phinfer {
namespace {

// The commands on the GPU (lavapipe in CI): the same greedy output as on the CPU.
TEST(CliGpu, GenerateChatBenchAndDevices) {
  const auto dir = test::shared_path("models/phi3-tiny-mha");
  const std::string gen = "generate -m " + q(dir) + " -p 'Hello there' --max-new-tokens 10 --json --device ";
  auto g = run_cli(gen + "gpu"), c = run_cli(gen + "cpu");
  ASSERT_EQ(g.status, 0) << g.err;
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(g.out)["output_ids"], nlohmann::json::parse(c.out)["output_ids"]);

  const std::string chat = "chat -m " + q(dir) + " --max-new-tokens 6 --device ";
  auto gc = run_cli(chat + "gpu:0", "Hi\nHow are you?\n"), cc = run_cli(chat + "cpu", "Hi\nHow are you?\n");
  ASSERT_EQ(gc.status, 0) << gc.err;
  EXPECT_EQ(gc.out, cc.out);

  auto d = run_cli("devices --json");
  ASSERT_EQ(d.status, 0) << d.err;
  const auto devices = nlohmann::json::parse(d.out)["devices"];
  ASSERT_GE(devices.size(), 2u) << d.out;
  EXPECT_EQ(devices[1]["id"], "gpu:0");

  auto b = run_cli("bench -m " + q(dir) + " --device gpu -p 16 -n 4 -r 1 --json");
  ASSERT_EQ(b.status, 0) << b.err;
  const auto bench = nlohmann::json::parse(b.out);
  EXPECT_EQ(bench["device"], "gpu:0");
  EXPECT_GT(bench["read_bandwidth_gb_s"].get<double>(), 0.0);
  EXPECT_GT(bench["decode_tokens_per_s"].get<double>(), 0.0);

  auto bad = run_cli(gen + "gpu:7");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("gpu:7 does not exist"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("gpu:0"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace phinfer
#endif
