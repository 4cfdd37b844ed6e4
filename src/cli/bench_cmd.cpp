// phinfer bench: load time, time to first token, prefill and decode speed, per-token latency, peak
// memory, and how close decode and prefill come to the machine's limits, measured in the same run.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "backend/backend.h"
#include "kernels/isa.h"
#include "kernels/probe.h"
#include "model/kv_cache.h"
#include "model/phi3.h"
#include "phinfer/engine.h"
#include "phinfer/error.h"

namespace phinfer::cli {
namespace {

struct BenchArgs {
  ModelArgs model;
  int64_t prompt_tokens = 512, gen_tokens = 128;
  int reps = 5;
  bool json = false;
  std::string chart;
  std::vector<int> parallel;          // sequence counts for the concurrent-sequences curve
  int64_t parallel_prompt_tokens = 64;
};


double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (rank - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

struct ParallelPoint {
  int sequences = 0;
  double decode_tps = 0, per_sequence_tps = 0, prefill_tps = 0;
};

// B concurrent sequences on one engine, each with its own prompt and KV cache. Prefill: every
// prompt read (all requests started) over its wall time. Decode: the steps while all B sequences
// decode (between the last prompt finished and the first request finished), B tokens each.
ParallelPoint measure_parallel(const Pipeline& pipe, int B, int64_t prompt_tokens, int64_t gen_tokens, int reps,
                               int threads) {
  using Clock = std::chrono::steady_clock;
  const auto& cfg = pipe.config();
  const int32_t hi = static_cast<int32_t>(std::min<int64_t>(cfg.vocab_size, 32000));
  std::vector<double> decode, prefill;
  for (int rep = 0; rep < reps; ++rep) {
    EngineOptions o;
    o.threads = threads;
    o.max_running = B;
    o.max_step_tokens = std::max<int64_t>(512, B + prompt_tokens);
    o.prefill_chunk = std::max<int64_t>(prompt_tokens, 1);
    Engine engine(pipe, o);
    std::mt19937 rng(static_cast<uint32_t>(77 + B * 1000 + rep));
    std::uniform_int_distribution<int32_t> pick(std::min(3, hi - 1), hi - 1);
    GenerationConfig gc;
    gc.max_new_tokens = gen_tokens + B;  // each one decodes >= gen_tokens steps next to all others
    gc.ignore_eos = true;
    for (int b = 0; b < B; ++b) {
      std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
      for (auto& id : prompt) id = pick(rng);
      engine.add_request(prompt, gc);
    }
    const auto t0 = Clock::now();
    Engine::Stats s = engine.stats();
    do {
      engine.step();
      s = engine.stats();
    } while (s.waiting > 0 || s.prefilling > 0);
    const auto t1 = Clock::now();
    const uint64_t g1 = s.generated_tokens;
    while (engine.stats().running == static_cast<size_t>(B) && engine.step()) {
    }
    const auto t2 = Clock::now();
    const uint64_t g2 = engine.stats().generated_tokens;
    while (engine.step()) {
    }
    prefill.push_back(static_cast<double>(B * prompt_tokens) / std::chrono::duration<double>(t1 - t0).count());
    decode.push_back(static_cast<double>(g2 - g1) / std::chrono::duration<double>(t2 - t1).count());
  }
  ParallelPoint p;
  p.sequences = B;
  p.decode_tps = median(decode);
  p.per_sequence_tps = p.decode_tps / B;
  p.prefill_tps = median(prefill);
  return p;
}

// Per-token decode latency of every repetition as an SVG line chart.
void write_chart(const std::string& path, const std::vector<std::vector<double>>& runs, const std::string& title,
                 const std::vector<ParallelPoint>& parallel) {
  const double W = 760, H = 360, L = 60, R = 20, T = 40, B = 50;
  double ymax = 0;
  size_t xmax = 1;
  for (const auto& r : runs) {
    for (double v : r) ymax = std::max(ymax, v);
    xmax = std::max(xmax, r.size());
  }
  ymax = ymax > 0 ? ymax * 1.1 : 1;
  std::ofstream out(path);
  if (!out) throw Error(path + ": cannot write the chart");
  char buf[256];
  const double total_h = parallel.empty() ? H : 2 * H;
  out << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << total_h << "' font-family='sans-serif' font-size='12'>\n";
  out << "<rect width='100%' height='100%' fill='white'/>\n";
  out << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='14'>" << title << "</text>\n";
  out << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n";
  out << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = ymax * i / 4, y = H - B - (H - T - B) * i / 4;
    std::snprintf(buf, sizeof buf, "<text x='%g' y='%g' text-anchor='end'>%.1f</text><line x1='%g' y1='%g' x2='%g' y2='%g' stroke='#ddd'/>\n",
                  L - 6, y + 4, v, L, y, W - R, y);
    out << buf;
  }
  out << "<text x='" << W / 2 << "' y='" << H - 12 << "' text-anchor='middle'>generated token</text>\n";
  out << "<text x='16' y='" << H / 2 << "' transform='rotate(-90 16 " << H / 2 << ")' text-anchor='middle'>latency (ms)</text>\n";
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
  for (size_t r = 0; r < runs.size(); ++r) {
    out << "<polyline fill='none' stroke-width='1.5' stroke='" << colors[r % 6] << "' points='";
    for (size_t i = 0; i < runs[r].size(); ++i) {
      const double x = L + (W - L - R) * static_cast<double>(i) / static_cast<double>(std::max<size_t>(xmax - 1, 1));
      const double y = H - B - (H - T - B) * runs[r][i] / ymax;
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x, y);
      out << buf;
    }
    out << "'/>\n";
  }
  if (!parallel.empty()) {
    // Second panel: aggregate decode tokens/s against concurrent sequences, with the linear ideal.
    const double y0 = H;
    double pmax = 0;
    for (const auto& p : parallel) pmax = std::max({pmax, p.decode_tps, parallel.front().decode_tps * p.sequences / parallel.front().sequences});
    pmax = pmax > 0 ? pmax * 1.1 : 1;
    const double bmax = parallel.back().sequences;
    auto px = [&](double b) { return L + (W - L - R) * (bmax > 1 ? (b - 1) / (bmax - 1) : 0.5); };
    auto py = [&](double v) { return y0 + H - B - (H - T - B) * v / pmax; };
    out << "<text x='" << W / 2 << "' y='" << y0 + 22 << "' text-anchor='middle' font-size='14'>aggregate decode tokens/s by concurrent sequences (dashed: linear)</text>\n";
    out << "<line x1='" << L << "' y1='" << y0 + H - B << "' x2='" << W - R << "' y2='" << y0 + H - B << "' stroke='black'/>\n";
    out << "<line x1='" << L << "' y1='" << y0 + T << "' x2='" << L << "' y2='" << y0 + H - B << "' stroke='black'/>\n";
    for (int i = 0; i <= 4; ++i) {
      std::snprintf(buf, sizeof buf, "<text x='%g' y='%g' text-anchor='end'>%.1f</text>\n", L - 6, py(pmax * i / 4) + 4, pmax * i / 4);
      out << buf;
    }
    std::string line, ideal;
    for (const auto& p : parallel) {
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(p.sequences), py(p.decode_tps));
      line += buf;
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(p.sequences), py(parallel.front().decode_tps * p.sequences / parallel.front().sequences));
      ideal += buf;
      std::snprintf(buf, sizeof buf, "<text x='%.1f' y='%.1f' text-anchor='middle'>%d</text>\n", px(p.sequences), y0 + H - B + 16, p.sequences);
      out << buf;
    }
    out << "<polyline fill='none' stroke='#999' stroke-dasharray='4 3' points='" << ideal << "'/>\n";
    out << "<polyline fill='none' stroke-width='2' stroke='#1f77b4' points='" << line << "'/>\n";
    out << "<text x='" << W / 2 << "' y='" << y0 + H - 12 << "' text-anchor='middle'>concurrent sequences</text>\n";
  }
  out << "</svg>\n";
}

int run_bench(BenchArgs& a) {
  if (a.prompt_tokens < 1 || a.gen_tokens < 2 || a.reps < 1)
    throw Error("bench needs -p >= 1, -n >= 2 and -r >= 1");
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  Pipeline pipe = load_pipeline(a.model);
  const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const auto& cfg = pipe.config();
  if (a.prompt_tokens + a.gen_tokens > cfg.max_position_embeddings)
    throw Error("-p + -n exceed the model's context of " + std::to_string(cfg.max_position_embeddings) + " tokens");

  // A fixed pseudo-random prompt of ordinary token ids (no special tokens).
  std::mt19937 rng(1234);
  const int32_t hi = static_cast<int32_t>(std::min<int64_t>(cfg.vocab_size, 32000));
  std::uniform_int_distribution<int32_t> pick(std::min(3, hi - 1), hi - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(a.prompt_tokens));
  for (auto& id : prompt) id = pick(rng);

  // The machine's limits with the same thread count. The int8 peak is measured before and after the
  // runs (the best of both: on a shared machine it reads differently from one minute to the next,
  // and the runs in between must be compared with what the machine could do in that time); the
  // bandwidth after them (its 1 GiB buffer would otherwise count in the runs' peak RSS).
  // On a GPU: its memory's read bandwidth (a probe shader); no int8 peak is measured there yet.
  double bandwidth = 0, int8_peak = 0;
  const std::string device = pipe.device();
  const bool on_gpu = device != "cpu";
  if (!on_gpu) {
    kernels::ThreadPool pool(a.model.pipeline.threads);
    int8_peak = kernels::measure_int8_peak_gops(pool);
  }

  GenerationConfig gc;
  gc.max_new_tokens = a.gen_tokens;
  gc.ignore_eos = true;
  std::vector<double> ttft, prefill_tps, decode_tps, latencies;
  std::vector<std::vector<double>> runs;
  for (int r = 0; r < a.reps; ++r) {
    GenerationResult res = pipe.generate(prompt, gc);
    ttft.push_back(res.stats.ttft_ms);
    prefill_tps.push_back(static_cast<double>(a.prompt_tokens) * 1000.0 / res.stats.ttft_ms);
    decode_tps.push_back(res.stats.decode_tokens_per_s);
    std::vector<double> per(res.stats.per_token_ms.begin() + 1, res.stats.per_token_ms.end());
    latencies.insert(latencies.end(), per.begin(), per.end());
    runs.push_back(per);
    if (!a.json) std::fprintf(stderr, "run %d/%d: ttft %.1f ms, decode %.2f tokens/s\n", r + 1, a.reps, res.stats.ttft_ms, res.stats.decode_tokens_per_s);
  }

  std::vector<ParallelPoint> parallel;
  for (int B : a.parallel) {
    parallel.push_back(measure_parallel(pipe, B, a.parallel_prompt_tokens, a.gen_tokens, a.reps, a.model.pipeline.threads));
    const auto& p = parallel.back();
    if (!a.json)
      std::fprintf(stderr, "parallel %d: decode %.2f tokens/s aggregate (%.2f per sequence), prefill %.2f tokens/s\n", B,
                   p.decode_tps, p.per_sequence_tps, p.prefill_tps);
  }

  const uint64_t rss = peak_rss_bytes();  // before the bandwidth probe allocates its buffer
  if (on_gpu) {
    bandwidth = backend::measure_gpu_bandwidth_gbs(device);
  } else {
    kernels::ThreadPool pool(a.model.pipeline.threads);
    for (int i = 0; i < 2; ++i) bandwidth = std::max(bandwidth, kernels::measure_read_bandwidth_gbs(pool));
    int8_peak = std::max(int8_peak, kernels::measure_int8_peak_gops(pool));
  }
  const uint64_t weight_bytes = pipe.weight_bytes_per_token();
  uint64_t macs_per_token = 0;  // multiply-adds of the layer matrices per prompt token
  {
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    macs_per_token = static_cast<uint64_t>(cfg.num_hidden_layers) *
                     static_cast<uint64_t>((cfg.q_dim() + 2 * cfg.kv_dim()) * H + H * cfg.q_dim() + 2 * I * H + H * I);
  }
  // Keys and values a decode step reads besides the weights: every visible position of the cache,
  // averaged over the timed steps (positions prompt .. prompt + gen - 2; the first token is the
  // prefill's). On the GPU the cache is f32.
  double kv_bytes = 0;
  {
    const auto type = on_gpu ? model::KVCacheType::F32 : model::parse_kv_cache_type(a.model.pipeline.kv_cache_dtype);
    const int64_t window = model::SlidingWindow::parse(a.model.pipeline.sliding_window)
                               .resolve(cfg)
                               .value_or(std::numeric_limits<int64_t>::max());  // keys a position sees
    const auto per_position = static_cast<double>(model::KVCache::bytes_per_position(cfg, type));
    const int64_t first = a.prompt_tokens, last = a.prompt_tokens + a.gen_tokens - 2;
    for (int64_t pos = first; pos <= last; ++pos) kv_bytes += per_position * static_cast<double>(std::min(pos + 1, window));
    kv_bytes /= static_cast<double>(last - first + 1);
  }
  const double decode = median(decode_tps), prefill = median(prefill_tps);
  const double bw_use = bandwidth > 0 ? static_cast<double>(weight_bytes) * decode / (bandwidth * 1e9) : 0;
  const double bw_use_with_kv =
      bandwidth > 0 ? (static_cast<double>(weight_bytes) + kv_bytes) * decode / (bandwidth * 1e9) : 0;
  const double prefill_gops = 2.0 * static_cast<double>(macs_per_token) * prefill / 1e9;
  const double compute_use = int8_peak > 0 ? prefill_gops / int8_peak : 0;
  const double p50 = percentile(latencies, 50), p90 = percentile(latencies, 90), p99 = percentile(latencies, 99);

  if (!a.chart.empty()) {
    char title[160];
    std::snprintf(title, sizeof title, "phinfer decode latency per token (%lld-token prompt, %d threads, %s)",
                  static_cast<long long>(a.prompt_tokens), a.model.pipeline.threads,
                  std::string(kernels::active_isa_name()).c_str());
    write_chart(a.chart, runs, title, parallel);
  }
  nlohmann::json parallel_json = nlohmann::json::array();
  for (const auto& p : parallel)
    parallel_json.push_back({{"sequences", p.sequences},
                             {"decode_tokens_per_s", p.decode_tps},
                             {"per_sequence_decode_tokens_per_s", p.per_sequence_tps},
                             {"prefill_tokens_per_s", p.prefill_tps}});
  if (a.json) {
    nlohmann::json out = {{"model", pipe.model_path().string()},
                {"device", device},
                {"isa", std::string(kernels::active_isa_name())},
                {"threads", a.model.pipeline.threads},
                {"prompt_tokens", a.prompt_tokens},
                {"generated_tokens", a.gen_tokens},
                {"repetitions", a.reps},
                {"load_ms", load_ms},
                {"ttft_ms", median(ttft)},
                {"prefill_tokens_per_s", prefill},
                {"decode_tokens_per_s", decode},
                {"per_token_ms", {{"p50", p50}, {"p90", p90}, {"p99", p99}}},
                {"peak_rss_bytes", rss},
                {"weight_bytes_per_token", weight_bytes},
                {"read_bandwidth_gb_s", bandwidth},
                {"decode_bandwidth_use", bw_use},
                {"kv_bytes_per_token", kv_bytes},
                {"decode_bandwidth_use_with_kv", bw_use_with_kv},
                {"int8_peak_gops", int8_peak},
                {"prefill_gops", prefill_gops},
                {"prefill_compute_use", compute_use}};
    if (!parallel.empty()) {
      out["parallel"] = parallel_json;
      out["parallel_prompt_tokens"] = a.parallel_prompt_tokens;
    }
    print_json(out);
    return 0;
  }
  std::printf("model                 %s (%s, %s, %d threads)\n", pipe.model_path().c_str(), device.c_str(),
              std::string(kernels::active_isa_name()).c_str(), a.model.pipeline.threads);
  std::printf("load                  %.1f ms\n", load_ms);
  std::printf("time to first token   %.1f ms (median of %d, %lld-token prompt)\n", median(ttft), a.reps,
              static_cast<long long>(a.prompt_tokens));
  if (on_gpu)
    std::printf("prefill               %.2f tokens/s (%.1f GOP/s; no int8 peak is measured on a GPU)\n", prefill, prefill_gops);
  else
    std::printf("prefill               %.2f tokens/s (%.1f GOP/s, %.1f%% of the int8 peak %.1f GOP/s)\n", prefill, prefill_gops,
                100 * compute_use, int8_peak);
  std::printf("decode                %.2f tokens/s (%lld tokens)\n", decode, static_cast<long long>(a.gen_tokens));
  std::printf("per-token latency     p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n", p50, p90, p99);
  std::printf("weights per token     %.1f MB; %s read bandwidth %.1f GB/s; decode uses %.1f%% of it\n", weight_bytes / 1e6,
              on_gpu ? "device" : "memory", bandwidth, 100 * bw_use);
  std::printf("KV cache per token    %.1f MB read (mean over the decode); weights and KV use %.1f%% of the bandwidth\n",
              kv_bytes / 1e6, 100 * bw_use_with_kv);
  std::printf("peak RSS              %.1f MB\n", rss / 1e6);
  for (const auto& p : parallel)
    std::printf("parallel %-3d          decode %.2f tokens/s aggregate (%.2fx of 1, %.2f per sequence), prefill %.2f tokens/s\n",
                p.sequences, p.decode_tps, parallel.front().sequences == 1 ? p.decode_tps / parallel.front().decode_tps : 0,
                p.per_sequence_tps, p.prefill_tps);
  return 0;
}

}  // namespace

Command add_bench(CLI::App& root) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* app = root.add_subcommand("bench", "Measure load, prefill and decode speed against the machine's limits");
  add_model_options(app, a->model);
  app->add_option("-p,--prompt-tokens", a->prompt_tokens, "Prompt length")->capture_default_str();
  app->add_option("-n,--gen-tokens", a->gen_tokens, "Tokens to generate")->capture_default_str();
  app->add_option("-r,--reps", a->reps, "Repetitions (medians are reported)")->capture_default_str();
  app->add_flag("--json", a->json, "Print one JSON object");
  app->add_option("--chart", a->chart, "Write per-token latency over the generation as an SVG chart");
  app->add_option("--parallel", a->parallel, "Also measure B concurrent sequences, e.g. 1,2,4,8,16 (aggregate and per-sequence decode, prefill)")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app->add_option("--parallel-prompt-tokens", a->parallel_prompt_tokens, "Prompt length of each concurrent sequence")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  return {app, [a] {
            if (a->model.pipeline.threads <= 0) a->model.pipeline.threads = kernels::ThreadPool::default_threads();
            return run_bench(*a);
          }};
}

}  // namespace phinfer::cli
