// gguf: structure-aware mutations of a valid tiny phi3 GGUF (tests/gguf_writer.h): metadata values
// retyped or set to edge values, keys erased or added (nested arrays, huge counts), tensor shapes,
// types and offsets edited, the header's counts, version and alignment changed, plus byte edits of
// the written file. Accepted files must give tensor views inside the buffer, of the size their type
// and shape say, tiling the data section in order; accepted files then go through the config, the
// tokenizer built from the metadata, and (when both load) the weights and one forward pass.
#include <cmath>
#include <cstring>
#include <memory>

#include "format/gguf.h"
#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "gguf_writer.h"
#include "model/gguf_weights.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/error.h"
#include "phinfer/tokenizer.h"
#include "tokenizer/gguf_vocab.h"

namespace phinfer::fuzz {
namespace {

using test::GgufWriter;
constexpr const char* kSrc = "buf.gguf";
constexpr const char* kName = "model.gguf";

std::string le64(uint64_t v) { return GgufWriter::bytes(v); }

const std::vector<std::string> kFragments = {
    le64(0), le64(1), le64(uint64_t{1} << 32), le64(uint64_t{1} << 63), le64(~uint64_t{0}), le64(0x7fffffffffffffffull),
    GgufWriter::bytes<uint32_t>(9), GgufWriter::bytes<uint32_t>(8), GgufWriter::bytes<uint32_t>(13),
    GgufWriter::bytes<uint32_t>(0xffffffffu), "GGUF", std::string(1, '\0'), "\xff", "blk.0.", "phi3.", "tokenizer.ggml."};

uint64_t edge_u64(Rng& rng) {
  static const uint64_t v[] = {0, 1, 2, 3, 7, 16, 31, 32, 33, 64, 255, 256, 4096, 65536, uint64_t{1} << 30, uint64_t{1} << 31,
                               uint64_t{1} << 32, uint64_t{1} << 42, uint64_t{1} << 62, uint64_t{1} << 63, ~uint64_t{0}};
  return one_in(rng, 4) ? rng() : v[pick(rng, std::size(v))];
}

// A random metadata value: a scalar of any type, a string, or an array (sometimes nested, sometimes
// with a count that lies).
std::pair<uint32_t, std::string> random_value(Rng& rng, int depth = 0) {
  const auto type = static_cast<uint32_t>(pick(rng, one_in(rng, 20) ? 16 : 13));
  std::string b;
  switch (type) {
    case GgufWriter::STRING: {
      const uint64_t n = one_in(rng, 8) ? edge_u64(rng) : pick(rng, 12);
      GgufWriter::put<uint64_t>(b, n);
      b += std::string(static_cast<size_t>(std::min<uint64_t>(n, 12)), 'x');
      break;
    }
    case GgufWriter::ARRAY: {
      const auto elem = static_cast<uint32_t>(depth < 5 ? pick(rng, 14) : GgufWriter::U8);
      const uint64_t n = pick(rng, 4);
      GgufWriter::put<uint32_t>(b, elem);
      GgufWriter::put<uint64_t>(b, one_in(rng, 6) ? edge_u64(rng) : n);
      for (uint64_t k = 0; k < n; ++k) {
        if (elem == GgufWriter::ARRAY || elem == GgufWriter::STRING) b += random_value(rng, depth + 1).second;
        else b += le64(rng()).substr(0, 1 + pick(rng, 8));
      }
      break;
    }
    default: b = le64(edge_u64(rng)).substr(0, 1 + pick(rng, 8)); break;
  }
  return {type, b};
}

class GgufHarness : public Harness {
 public:
  explicit GgufHarness(const Context& ctx) : scratch_(ctx.scratch_dir), pool_(1) {}

  Input generate(Rng& rng) override {
    test::TinyPhi3 m;
    const int edits = 1 + static_cast<int>(pick(rng, 3));
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 6) {
        case 0: {  // retype / re-value a metadata key
          auto it = std::next(m.kv.begin(), static_cast<long>(pick(rng, m.kv.size())));
          const auto v = random_value(rng);
          it->second = [v](GgufWriter& w, const std::string& k) { w.raw(k, v.first, v.second); };
          break;
        }
        case 1: {  // an integer key set to an edge value of its own type
          auto it = std::next(m.kv.begin(), static_cast<long>(pick(rng, m.kv.size())));
          const uint64_t v = edge_u64(rng);
          it->second = [v](GgufWriter& w, const std::string& k) { w.u32(k, static_cast<uint32_t>(v)); };
          break;
        }
        case 2: m.kv.erase(std::next(m.kv.begin(), static_cast<long>(pick(rng, m.kv.size())))); break;
        case 3: {  // a tensor reshaped or retyped
          auto it = std::next(m.tensors.begin(), static_cast<long>(pick(rng, m.tensors.size())));
          if (one_in(rng, 2)) it->second.second = static_cast<uint32_t>(pick(rng, 16));
          else it->second.first[pick(rng, it->second.first.size())] = static_cast<int64_t>(pick(rng, 130));
          if (!format::ggml_type_info(it->second.second) ||
              it->second.first[0] % format::ggml_type_info(it->second.second)->block != 0)
            it->second.second = 0;  // the writer sizes data by type: keep it buildable
          break;
        }
        case 4: m.tensors.erase(std::next(m.tensors.begin(), static_cast<long>(pick(rng, m.tensors.size())))); break;
        default: {
          static const char* const keys[] = {"general.alignment", "phi3.attention.sliding_window",
                                             "phi3.rope.scaling.attn_factor", "tokenizer.ggml.merges",
                                             "tokenizer.chat_template", "tokenizer.ggml.add_bos_token", "x"};
          const auto v = random_value(rng);
          m.kv[keys[pick(rng, std::size(keys))]] = [v](GgufWriter& w, const std::string& k) { w.raw(k, v.first, v.second); };
        }
      }
    }
    std::string file = m.build();
    if (one_in(rng, 3)) mutate_bytes(file, rng, kFragments);
    if (one_in(rng, 10) && file.size() >= 24) {  // the version, then the tensor and key counts, set to edge values
      const std::string edges = le64(edge_u64(rng)) + le64(edge_u64(rng)) + le64(edge_u64(rng));
      std::memcpy(file.data() + 4, edges.data(), 4 + 8 * pick(rng, 3));
    }
    return {{kName, file}};
  }

  void run(const Input& input) override {
    const std::string& bytes = file(input, kName);
    // An exact-size heap block, so a sanitizer catches any read past its end.
    std::unique_ptr<std::byte[]> exact(new std::byte[bytes.size() ? bytes.size() : 1]);
    std::memcpy(exact.get(), bytes.data(), bytes.size());
    const std::span<const std::byte> buf(exact.get(), bytes.size());
    const format::GgufFile f = [&] {
      try {
        return format::GgufFile::parse(buf, kSrc);
      } catch (const Error& e) {
        require(std::string_view(e.what()).starts_with(kSrc), "message does not start with the file name: " + brief(e.what()));
        throw;
      }
    }();
    uint64_t expected = 0;
    for (const auto& t : f.tensors()) {
      const auto& info = format::ggml_type_info(t.type);
      require(t.data.data() >= buf.data() && t.data.data() + t.data.size() <= buf.data() + buf.size(),
              "tensor '" + t.name + "' views outside the buffer");
      require(t.data.size() == static_cast<uint64_t>(t.numel / info.block * info.block_bytes), "tensor '" + t.name + "' size");
      require(t.offset == expected && t.offset % f.alignment() == 0, "tensor '" + t.name + "' placement");
      expected = (t.offset + t.data.size() + f.alignment() - 1) / f.alignment() * f.alignment();
      volatile uint8_t sink = 0;  // touch every byte: an out-of-bounds view fails here under ASan
      for (std::byte b : t.data) sink = sink ^ static_cast<uint8_t>(b);
    }
    // The model-level readers on the accepted file (each may refuse it with an Error).
    const ModelConfig config = model::config_from_gguf(f);
    const auto files = tok::tokenizer_files_from_gguf(f);
    const Tokenizer tok = Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, kSrc);
    const auto ids = tok.encode("a ab bab <s>", true);
    for (int32_t id : ids) require(id >= 0 && id < tok.vocab_size(), "token id out of range");
    const auto path = scratch_ / "model.gguf";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    model::Phi3Model m(model::LoadedWeights::open(path), {});
    require(m.config().hidden_size == config.hidden_size, "config differs between loads");
    model::Sequence seq(m, pool_);
    std::vector<int32_t> prompt;
    for (int32_t id : ids)
      if (id < config.vocab_size) prompt.push_back(id);
    if (prompt.empty()) prompt.push_back(0);
    const std::vector<int64_t> last = {static_cast<int64_t>(prompt.size()) - 1};
    const auto logits = seq.append_with_logits(prompt, last);
    require(static_cast<int64_t>(logits.size()) == config.vocab_size, "logits size");
  }

 private:
  std::filesystem::path scratch_;
  kernels::ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Harness> make_gguf(const Context& ctx) { return std::make_unique<GgufHarness>(ctx); }

}  // namespace phinfer::fuzz
