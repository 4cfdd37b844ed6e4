// config.json and generation_config.json: structural edits (keys erased or set to edge values,
// rope_scaling tables of wrong sizes and types) and textual edits of the real files in ../shared,
// read through the file parser. An accepted config must be consistent (the checks the model
// relies on); an accepted generation config must hold values in their documented ranges.
#include <cmath>
#include <fstream>

#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "phinfer/config.h"
#include "phinfer/error.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;

const std::vector<std::string> kWords = {
    "type", "short_factor", "long_factor", "attention_factor", "factor", "longrope", "su", "linear",
    "rope_scaling", "head_dim", "num_key_value_heads", "partial_rotary_factor", "sliding_window",
    "eos_token_id", "bos_token_id", "pad_token_id", "vocab_size", "hidden_size", "max_position_embeddings",
    "original_max_position_embeddings", "tie_word_embeddings", "temperature", "top_k", "top_p", "do_sample"};
const std::vector<std::string> kFragments = {"-", "0", "1e9", "1e999", "null", "[", "]", "{}", "\"", ",",
                                             "9999999999", "0.0", "-0", "NaN", "\xff", "18446744073709551616"};

struct Seed {
  std::string name;  // config.json or generation_config.json
  std::string text;
  json doc;
};

class ConfigHarness : public Harness {
 public:
  explicit ConfigHarness(const Context& ctx) : dir_(ctx.scratch_dir / "config"), known_bugs_(ctx.with_known_bugs) {
    std::filesystem::create_directories(dir_);
    for (const char* folder : {"data", "models"})
      for (const auto& entry : std::filesystem::directory_iterator(ctx.shared_dir / folder))
        for (const char* name : {"config.json", "generation_config.json"})
          if (std::filesystem::exists(entry.path() / name)) {
            std::string text = read_file(entry.path() / name);
            seeds_.push_back({name, text, json::parse(text)});
          }
    if (seeds_.empty()) throw std::runtime_error("no config.json seeds under " + ctx.shared_dir.string());
  }

  Input generate(Rng& rng) override {
    const Seed& s = seeds_[pick(rng, seeds_.size())];
    if (one_in(rng, 3)) {
      std::string text = s.text;
      mutate_bytes(text, rng, kFragments);
      if (!known_bugs_) {
        json parsed = json::parse(text, nullptr, false);
        if (!parsed.is_discarded() && avoid_known_bugs(parsed)) text = parsed.dump();
      }
      return {{s.name, text}};
    }
    json j = s.doc;
    if (one_in(rng, 2) || !j.is_object()) {
      mutate_json(j, rng, kWords);
    } else {  // top-level fields set to edge values, erased, or a rope_scaling member replaced
      for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
        const std::string& key = kWords[pick(rng, kWords.size())];
        if (one_in(rng, 4)) j.erase(key);
        else if (j.is_object() && j.contains("rope_scaling") && j["rope_scaling"].is_object() && one_in(rng, 2))
          j["rope_scaling"][kWords[pick(rng, 5)]] =
              one_in(rng, 2) ? json(std::vector<double>(pick(rng, 64), 1.0 + static_cast<double>(rng() % 10)))
                             : random_value(rng, kWords);
        else j[key] = random_value(rng, kWords);
      }
    }
    if (!known_bugs_) avoid_known_bugs(j);
    return {{s.name, j.dump(-1, ' ', false, json::error_handler_t::replace)}};
  }

  void run(const Input& input) override {
    const File& f = input.at(0);
    const auto path = dir_ / f.name;
    const bool generation = f.name == "generation_config.json";
    // from_file is read_json_file + from_json: text that is JSON goes to from_json directly (writing
    // a file per input would be most of the time), the rest through the file reader.
    const json parsed = json::parse(f.bytes, nullptr, false);
    if (parsed.is_discarded()) {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << f.bytes;
    }
    try {
      if (!parsed.is_discarded() && generation) check(GenerationDefaults::from_json(parsed, path.string()));
      else if (!parsed.is_discarded()) check(ModelConfig::from_json(parsed, path.string()));
      else if (generation) check(GenerationDefaults::from_file(path));
      else check(ModelConfig::from_file(path));
    } catch (const Error& e) {
      require(std::string_view(e.what()).find(path.string()) != std::string_view::npos,
              "message does not name the file: " + brief(e.what()));
      throw;
    }
  }

 private:
  static void check(const ModelConfig& c) {
    require(c.vocab_size > 0 && c.hidden_size > 0 && c.head_dim > 0, "non-positive sizes");
    require(c.rotary_dim() >= 2 && c.rotary_dim() <= c.head_dim, "rotary_dim outside [2, head_dim]");
    require(c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0, "heads do not group");
    require(c.max_position_embeddings > 0 && c.original_max_position_embeddings > 0, "non-positive context");
    require(!c.sliding_window || *c.sliding_window > 0, "non-positive sliding window");
    for (int32_t id : c.eos_token_ids) require(id >= 0, "negative eos id");
    if (c.rope_scaling) {
      const size_t half = static_cast<size_t>(c.rotary_dim() / 2);
      require(c.rope_scaling->short_factor.size() == half && c.rope_scaling->long_factor.size() == half,
              "rope factor tables not rotary_dim / 2 long");
      for (const auto* table : {&c.rope_scaling->short_factor, &c.rope_scaling->long_factor})
        for (float x : *table) require(std::isfinite(x) && x > 0, "rope factor not finite and positive");
      require(std::isfinite(c.rope_scaling->attention_factor) && c.rope_scaling->attention_factor > 0,
              "attention factor not finite and positive");
    }
  }
  static void check(const GenerationDefaults& g) {
    for (int32_t id : g.eos_token_ids) require(id >= 0, "negative eos id");
    require(!g.temperature || (std::isfinite(*g.temperature) && *g.temperature >= 0), "bad temperature");
    require(!g.top_p || (*g.top_p >= 0 && *g.top_p <= 1), "top_p outside [0, 1]");
    require(!g.top_k || *g.top_k >= 0, "negative top_k");
    require(!g.max_new_tokens || *g.max_new_tokens >= 0, "negative max_new_tokens");
  }

  // Known bug 1 (tests/FUZZING.md): a rope factor beyond float range is accepted as inf.
  static bool avoid_known_bugs(json& j) {
    bool changed = false;
    if (!j.is_object() || !j.contains("rope_scaling") || !j["rope_scaling"].is_object()) return changed;
    for (const char* table : {"short_factor", "long_factor"}) {
      json& t = j["rope_scaling"][table];
      if (t.is_array())
        for (json& x : t)
          if (x.is_number() && std::fabs(x.get<double>()) > 3.4e38) x = 1.0, changed = true;
    }
    return changed;
  }

  std::filesystem::path dir_;
  bool known_bugs_;
  std::vector<Seed> seeds_;
};

}  // namespace

std::unique_ptr<Harness> make_config(const Context& ctx) { return std::make_unique<ConfigHarness>(ctx); }

}  // namespace phinfer::fuzz
