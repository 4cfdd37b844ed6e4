// phinfer bench-grammar: how long computing a grammar's token mask takes per token, on a
// tokenizer's whole vocabulary. Random walks through each schema's texts (one random allowed
// token after another, as a sampler would pick them) time the mask before every token: the trie
// walk alone (every state computed afresh, every token visited), the first visit of a state (computed
// afresh with the token-class shortcut: what a state never seen before costs) and the mask as
// generation gets it (the cache shared by all generations of the grammar, after warm-up walks).
// Times are the thread's CPU time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <time.h>

#include "cli/commands.h"
#include "format/file_io.h"
#include "grammar/gbnf.h"
#include "grammar/grammar_impl.h"
#include "grammar/token_mask.h"
#include "grammar/vocabulary.h"
#include "phinfer/error.h"
#include "phinfer/tokenizer.h"

namespace phinfer::cli {
namespace {

// Typical structured-output schemas (a record, an order with nested arrays, a tool call).
const std::pair<const char*, const char*> kBuiltInSchemas[] = {
    {"person", R"({"type":"object","properties":{"name":{"type":"string","maxLength":40},
        "age":{"type":"integer","minimum":0,"maximum":150},"email":{"type":"string","format":"email"},
        "tags":{"type":"array","items":{"type":"string","maxLength":16},"maxItems":5}},"required":["name","age"]})"},
    {"order", R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"date":{"type":"string","format":"date"},
        "items":{"type":"array","minItems":1,"maxItems":5,"items":{"type":"object","properties":{
        "sku":{"type":"string","maxLength":12},"qty":{"type":"integer","minimum":1,"maximum":1000},"price":{"type":"number"}},
        "required":["sku","qty","price"]}},"status":{"enum":["new","paid","shipped","cancelled"]}},
        "required":["id","items","status"]})"},
    {"tool-call", R"({"type":"object","properties":{"name":{"enum":["get_weather","search","calculator"]},
        "arguments":{"type":"object","properties":{"query":{"type":"string","maxLength":60},
        "units":{"enum":["metric","imperial"]},"limit":{"type":"integer","minimum":1,"maximum":20}},"required":["query"]}},
        "required":["name","arguments"]})"},
};

struct BenchGrammarArgs {
  std::vector<std::string> tokenizers;
  std::vector<std::string> schemas;
  int walks = 20, warmup = 20;
  uint64_t seed = 1;
  bool json = false;
};

// The calling thread's CPU time in microseconds: on a shared machine, time spent waiting for a core
// is not the mask's.
double thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) * 1e-3;
}

struct Timing {
  std::vector<double> us;
  void add(double d) { us.push_back(d); }
  double mean() const {
    double s = 0;
    for (double v : us) s += v;
    return us.empty() ? 0 : s / static_cast<double>(us.size());
  }
  double pct(double p) const {
    if (us.empty()) return 0;
    std::vector<double> v = us;
    const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  }
};

bool has(std::span<const uint64_t> mask, int32_t id) { return (mask[static_cast<size_t>(id) / 64] >> (id % 64)) & 1; }

// One random walk; `on_mask` times the mask before each token, `accept` takes the token chosen.
// Returns the tokens taken.
template <class MaskFn, class AcceptFn>
int walk(const grammar::Vocabulary& vocab, int32_t end_id, std::mt19937_64& rng, MaskFn&& on_mask,
         AcceptFn&& accept) {
  std::vector<int32_t> ids;
  for (int step = 0; step < 2000; ++step) {
    std::span<const uint64_t> mask = on_mask();
    ids.clear();
    for (size_t w = 0; w < mask.size(); ++w)
      for (uint64_t bits = mask[w]; bits; bits &= bits - 1)
        ids.push_back(static_cast<int32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits))));
    if (ids.empty()) throw Error("bench-grammar: the grammar dead-ended (a bug)");
    if (has(mask, end_id) && rng() % 2 == 0) return step;
    // Short tokens half the time, so walks go through every part of the schema and still end.
    int32_t pick = ids[rng() % ids.size()];
    if (rng() % 2 == 0)
      for (int k = 0; k < 3; ++k) {
        const int32_t other = ids[rng() % ids.size()];
        if (vocab.bytes(other, false).size() < vocab.bytes(pick, false).size()) pick = other;
      }
    if (pick == end_id) return step;
    accept(pick);
  }
  return 2000;
}

int run_bench_grammar(const BenchGrammarArgs& a) {
  if (a.tokenizers.empty()) throw Error("give at least one tokenizer folder (-t)");
  std::vector<std::pair<std::string, std::string>> schemas;
  for (const auto& [name, text] : kBuiltInSchemas) schemas.emplace_back(name, text);
  if (!a.schemas.empty()) schemas.clear();
  for (const auto& path : a.schemas) schemas.emplace_back(path, format::read_whole_file(path, grammar::kMaxGrammarBytes));
  nlohmann::json report = nlohmann::json::array();
  for (const auto& dir : a.tokenizers) {
    const Tokenizer tok = Tokenizer::from_dir(dir);
    const auto t0 = std::chrono::steady_clock::now();
    auto vocab = grammar::Vocabulary::build(tok, tok.vocab_size());
    const double build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const int32_t end_id = tok.eos_id().value_or(0);
    if (!a.json)
      std::printf("%s: %d tokens, %zu trie nodes, vocabulary built in %.0f ms\n", dir.c_str(), tok.vocab_size(),
                  vocab->trie(false).nodes.size(), build_ms);
    for (const auto& [name, text] : schemas) {
      const Grammar g = Grammar::from_json_schema(text, name);
      std::mt19937_64 rng(a.seed);
      // Every mask computed afresh (a zero-byte cache keeps nothing): the whole trie walk, and the
      // mask with the token-class shortcut, on the same states (and checked equal).
      // The grammar's class indexes are kept from walk to walk (built on first use, timed where
      // that happens); its masks are not (a zero-byte budget).
      Timing full, fresh, cached;
      int tokens = 0;
      auto no_masks = std::make_shared<grammar::MaskCache>(0);
      for (int w = 0; w < a.walks; ++w) {
        grammar::ConstrainedDecoding c(g.impl->rules, vocab, no_masks, {end_id});
        grammar::ConstrainedDecoding plain(g.impl->rules, vocab, std::make_shared<grammar::MaskCache>(0), {end_id});
        plain.use_token_classes(false);
        tokens += walk(
            *vocab, end_id, rng,
            [&] {
              double s = thread_cpu_us();
              const auto expect = plain.allowed();
              full.add(thread_cpu_us() - s);
              s = thread_cpu_us();
              auto m = c.allowed();
              fresh.add(thread_cpu_us() - s);
              if (!std::equal(m.begin(), m.end(), expect.begin(), expect.end()))
                throw Error("bench-grammar: the shortcut's mask differs from the trie walk's (a bug)");
              return m;
            },
            [&](int32_t id) { c.accept(id), plain.accept(id); });
      }
      // As in generation: one cache for every walk of the grammar; timed after warm-up walks.
      auto cache = std::make_shared<grammar::MaskCache>();
      for (int w = 0; w < a.warmup + a.walks; ++w) {
        grammar::ConstrainedDecoding c(g.impl->rules, vocab, cache, {end_id});
        walk(
            *vocab, end_id, rng,
            [&] {
              const double s = thread_cpu_us();
              auto m = c.allowed();
              if (w >= a.warmup) cached.add(thread_cpu_us() - s);
              return m;
            },
            [&](int32_t id) { c.accept(id); });
      }
      auto stats = [](const Timing& t) { return nlohmann::json{{"mean", t.mean()}, {"p50", t.pct(0.5)}, {"p99", t.pct(0.99)}}; };
      report.push_back({{"tokenizer", dir}, {"vocab", tok.vocab_size()}, {"schema", name}, {"tokens", tokens},
                        {"trie_walk_us", stats(full)}, {"uncached_us", stats(fresh)}, {"cached_us", stats(cached)},
                        {"grammar_classes", no_masks->classes_built()}, {"grammar_classes_ms", no_masks->class_build_ms()}});
      if (!a.json)
        std::printf("  %-10s %5d tokens  trie walk mean %8.1f p99 %8.1f us | first visit mean %7.1f p99 %7.1f us | "
                    "with cache mean %6.1f p99 %7.1f us | %zu grammar classes indexed in %.0f ms\n",
                    name.c_str(), tokens, full.mean(), full.pct(0.99), fresh.mean(), fresh.pct(0.99), cached.mean(),
                    cached.pct(0.99), no_masks->classes_built(), no_masks->class_build_ms());
    }
  }
  if (a.json) print_json(report);
  return 0;
}

}  // namespace

Command add_bench_grammar(CLI::App& root) {
  auto a = std::make_shared<BenchGrammarArgs>();
  CLI::App* app = root.add_subcommand("bench-grammar", "Measure the grammar token-mask time per token on a vocabulary");
  app->add_option("-t,--tokenizer", a->tokenizers, "Folder with tokenizer.json (repeatable)")->required();
  app->add_option("--schema", a->schemas, "JSON Schema file (repeatable; default: three built-in typical schemas)");
  app->add_option("--walks", a->walks, "Random walks timed per schema")->capture_default_str();
  app->add_option("--warmup", a->warmup, "Walks that fill the mask cache before the cached timing")->capture_default_str();
  app->add_option("--seed", a->seed, "Random seed of the walks")->capture_default_str();
  app->add_flag("--json", a->json, "Print the results as JSON");
  return {app, [a] { return run_bench_grammar(*a); }};
}

}  // namespace phinfer::cli
