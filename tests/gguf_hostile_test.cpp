// Malformed GGUF files, written by the tests themselves (tests/gguf_writer.h): the shapes of
// llama.cpp's 2024 GGUF parser advisories (huge string lengths and array counts, n_tensors / n_kv
// overflow, tensor dims whose product overflows, offsets outside the file, misaligned or
// overlapping, unknown types) and metadata that does not fit the model. Each must be a clear
// phinfer::Error naming the field or tensor, never a crash or a huge allocation.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "format/gguf.h"
#include "gguf_writer.h"
#include "model/gguf_weights.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"
#include "tokenizer/gguf_vocab.h"

namespace phinfer {
namespace {

using test::GgufWriter;
using TinyModel = test::TinyPhi3;
constexpr uint64_t kHuge = uint64_t{1} << 63;

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

// Parsing must fail with a message containing every one of `parts`.
void expect_rejected(const std::string& file, std::initializer_list<std::string> parts) {
  try {
    format::GgufFile::parse(as_bytes(file), "crafted.gguf");
    ADD_FAILURE() << "accepted; expected an error mentioning " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("crafted.gguf: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find("crafted.gguf", 1), std::string::npos) << "source named twice: " << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
  }
}

std::string f32_data(size_t n, float v = 0.5f) {
  std::string s(n * 4, '\0');
  for (size_t i = 0; i < n; ++i) std::memcpy(s.data() + 4 * i, &v, 4);
  return s;
}

// --- header and metadata ---------------------------------------------------------------------

TEST(GgufHostile, MagicAndVersion) {
  expect_rejected("GGML" + std::string(20, '\0'), {"not a GGUF file"});
  expect_rejected("GG", {"not a GGUF file"});
  GgufWriter w;
  w.version = 1;
  expect_rejected(w.build(), {"version 1"});
  w.version = 4;
  expect_rejected(w.build(), {"version 4", "expected 2 or 3"});
  w.version = 0x03000000;  // a big-endian version 3
  expect_rejected(w.build(), {"big-endian"});
  w.version = 2;
  EXPECT_EQ(format::GgufFile::parse(as_bytes(w.build()), "v2").version(), 2u);
}

TEST(GgufHostile, CountsBeyondTheFile) {
  GgufWriter w;
  w.u32("a", 1);
  expect_rejected(w.build(-1, static_cast<int64_t>(kHuge - 1)), {"metadata entries"});
  expect_rejected(w.build(static_cast<int64_t>(kHuge - 1), -1), {"tensors"});
  // Two entries claimed, one present (the writer's trailing padding cut off).
  expect_rejected(w.build(-1, 2).substr(0, 24 + 8 + 1 + 4 + 4), {"claims 2 metadata entries", "hold at most 1"});
  expect_rejected(w.build(-1, 2).substr(0, 24 + 8 + 1 + 4 + 4) + std::string(13, '\1'), {"metadata entry 1 key", "string length 72340172838076673 exceeds the 5 bytes left"});
}

TEST(GgufHostile, StringLengths) {
  GgufWriter w;
  std::string v;
  GgufWriter::put<uint64_t>(v, kHuge);
  w.raw("general.name", GgufWriter::STRING, v + "abc");
  expect_rejected(w.build(), {"general.name", "string length 9223372036854775808"});
  // A key whose length runs past the end.
  std::string file = "GGUF";
  GgufWriter::put<uint32_t>(file, 3);
  GgufWriter::put<uint64_t>(file, 0);
  GgufWriter::put<uint64_t>(file, 1);
  GgufWriter::put<uint64_t>(file, 1000);
  expect_rejected(file + std::string(100, 'k'), {"metadata entry 0 key", "string length 1000"});
  GgufWriter e;
  e.u32("", 1);
  expect_rejected(e.build(), {"key is empty"});
}

TEST(GgufHostile, ArrayCountsAndTypes) {
  for (uint32_t elem : {GgufWriter::U8, GgufWriter::STRING, GgufWriter::F64, GgufWriter::ARRAY}) {
    GgufWriter w;
    std::string v;
    GgufWriter::put<uint32_t>(v, elem);
    GgufWriter::put<uint64_t>(v, kHuge + 5);
    w.raw("tokenizer.ggml.tokens", GgufWriter::ARRAY, v + std::string(16, 'x'));
    expect_rejected(w.build(), {"tokenizer.ggml.tokens", "array of 9223372036854775813"});
  }
  GgufWriter bad_type;
  bad_type.raw("k", 13, "");
  expect_rejected(bad_type.build(), {"'k'", "value type id 13"});
  GgufWriter bad_elem;
  std::string v;
  GgufWriter::put<uint32_t>(v, 99);
  GgufWriter::put<uint64_t>(v, 1);
  bad_elem.raw("k", GgufWriter::ARRAY, v);
  expect_rejected(bad_elem.build(), {"'k'", "element type id 99"});
  // Arrays of arrays: a few levels are read, deeper nesting is refused.
  auto nested = [](int depth) {
    std::string inner;
    GgufWriter::put<uint32_t>(inner, GgufWriter::U8);
    GgufWriter::put<uint64_t>(inner, 1);
    inner += '\7';
    for (int d = 1; d < depth; ++d) {
      std::string outer;
      GgufWriter::put<uint32_t>(outer, GgufWriter::ARRAY);
      GgufWriter::put<uint64_t>(outer, 1);
      inner = outer + inner;
    }
    GgufWriter w;
    w.raw("nested", GgufWriter::ARRAY, inner);
    return w.build();
  };
  const std::string file = nested(3);  // the parsed file views its bytes: they must outlive it
  const auto ok = format::GgufFile::parse(as_bytes(file), "ok");
  EXPECT_EQ(ok.find("nested")->arrays.at(0).arrays.at(0).integer_at(0), 7);
  expect_rejected(nested(5), {"'nested'", "nested deeper than 4"});
  GgufWriter bools;
  bools.raw("flag", GgufWriter::BOOL, "\2");
  expect_rejected(bools.build(), {"'flag'", "bool", "found 2"});
}

TEST(GgufHostile, DuplicatesAndAlignment) {
  GgufWriter dup;
  dup.u32("a", 1);
  dup.u32("a", 2);
  expect_rejected(dup.build(), {"'a' appears twice"});
  for (uint32_t a : {0u, 3u, 1u << 30}) {
    GgufWriter w;
    w.u32("general.alignment", a);
    expect_rejected(w.build(), {"general.alignment", "power of two", std::to_string(a)});
  }
  GgufWriter typed;
  typed.u64("general.alignment", 64);
  expect_rejected(typed.build(), {"general.alignment", "expected u32, found u64"});
  GgufWriter ok;
  ok.u32("general.alignment", 64);
  ok.alignment = 64;
  ok.tensor("a", 0, {3}, f32_data(3));
  ok.tensor("b", 0, {5}, f32_data(5));
  const std::string file = ok.build();
  const auto f = format::GgufFile::parse(as_bytes(file), "ok");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.find_tensor("b")->offset, 64u);
}

// --- tensor infos ----------------------------------------------------------------------------

TEST(GgufHostile, TensorShapes) {
  auto one = [](std::vector<int64_t> ne, uint32_t type = 0, std::string data = "", int64_t n_dims = -1) {
    GgufWriter w;
    w.tensor("blk.0.attn_qkv.weight", type, std::move(ne), std::move(data), -1, n_dims);
    return w.build();
  };
  expect_rejected(one({1, 1, 1, 1, 1}), {"'blk.0.attn_qkv.weight'", "1 to 4 dimensions, found 5"});
  expect_rejected(one({4}, 0, "", 0), {"found 0"});
  expect_rejected(one({4, -3}), {"dimension 1 is negative"});
  expect_rejected(one({(int64_t{1} << 42) + 1, int64_t{1} << 22}), {"more elements than fit in int64"});
  // Elements fit in int64, bytes do not (2^62 F32 values).
  expect_rejected(one({int64_t{1} << 31, int64_t{1} << 31}), {"more bytes than fit"});
  expect_rejected(one({4}, 100), {"unknown ggml type id 100"});
  expect_rejected(one({4}, 4), {"unknown ggml type id 4"});  // retired Q4_2
  expect_rejected(one({33, 1}, 8), {"row length 33", "Q8_0 block size 32"});
  GgufWriter longname;
  longname.tensor(std::string(64, 'n'), 0, {1}, f32_data(1));
  expect_rejected(longname.build(), {"name of 64 bytes"});
  GgufWriter dup;
  dup.tensor("t", 0, {1}, f32_data(1));
  dup.tensor("t", 0, {1}, f32_data(1));
  expect_rejected(dup.build(), {"'t' appears twice"});
}

TEST(GgufHostile, TensorOffsets) {
  GgufWriter misaligned;
  misaligned.tensor("a", 0, {4}, f32_data(4), 4);
  expect_rejected(misaligned.build(), {"'a'", "offset 4 is not a multiple of the alignment 32"});
  GgufWriter gap;
  gap.tensor("a", 0, {4}, f32_data(4), 64);
  expect_rejected(gap.build(), {"'a'", "data offset 64, expected 0"});
  GgufWriter overlap;
  overlap.tensor("a", 0, {16}, f32_data(16));
  overlap.tensor("b", 0, {4}, f32_data(4), 32);
  expect_rejected(overlap.build(), {"'b'", "data offset 32, expected 64", "overlaps"});
  GgufWriter past_end;
  past_end.tensor("a", 0, {4}, f32_data(4));
  std::string file = past_end.build();
  file.resize(file.size() - 4);
  expect_rejected(file, {"'a'", "runs past the end of the data section"});
  GgufWriter huge_offset;
  huge_offset.tensor("a", 0, {4}, f32_data(4), static_cast<int64_t>(kHuge - 32));
  expect_rejected(huge_offset.build(), {"'a'"});
}

TEST(GgufHostile, EveryTruncationOfAValidFileIsAnError) {
  GgufWriter w;
  w.str("general.architecture", "phi3");
  w.strings("tokenizer.ggml.tokens", {"a", "b"});
  w.numbers<float>("tokenizer.ggml.scores", GgufWriter::F32, {0.f, -1.f});
  w.tensor("a", 0, {8}, f32_data(8));
  w.tensor("b", 8, {32, 2}, std::string(68, '\1'));
  const std::string file = w.build();
  EXPECT_NO_THROW(format::GgufFile::parse(as_bytes(file), "full"));
  for (size_t n = 0; n < file.size(); ++n) {
    if (n >= file.size() - 100 && file.size() - n <= 31) continue;  // cut inside the trailing padding only
    EXPECT_THROW(format::GgufFile::parse(as_bytes(file.substr(0, n)), "cut"), Error) << "cut at " << n;
  }
}

// --- metadata that does not fit the model ------------------------------------------------------

void expect_load_error(const TinyModel& m, const std::string& tag, std::initializer_list<std::string> parts) {
  const auto path = m.write(std::filesystem::temp_directory_path(), tag);
  try {
    model::LoadedWeights::open(path);
    const auto files = tok::tokenizer_files_from_gguf(format::GgufFile::open(path));
    Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, path.string());
    ADD_FAILURE() << tag << ": loaded; expected an error mentioning " << *parts.begin();
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << tag << ": " << e.what();
  }
  std::filesystem::remove(path);
}

TEST(GgufHostile, TinyModelLoadsAndRuns) {
  const auto path = TinyModel().write(std::filesystem::temp_directory_path(), "valid");
  Pipeline p = Pipeline::load(path, {});
  EXPECT_EQ(p.config().hidden_size, 32);
  // "▁a" outranks "ab" (scores -4, -5): merges follow the scores.
  EXPECT_EQ(p.tokenizer().encode("a ab", true), (std::vector<int32_t>{1, 6, 6, 5}));
  EXPECT_EQ(p.tokenizer().encode("bab", false), (std::vector<int32_t>{3, 5, 7}));
  const auto logits = p.logits(std::vector<int32_t>{1, 6, 7}, std::vector<int64_t>{2});
  ASSERT_EQ(logits.size(), 8u);
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
  std::filesystem::remove(path);
}

TEST(GgufHostile, MetadataThatDoesNotFitTheModel) {
  auto with = [](const std::string& key, std::function<void(GgufWriter&, const std::string&)> put) {
    TinyModel m;
    if (put) m.kv[key] = std::move(put);
    else m.kv.erase(key);
    return m;
  };
  auto u32 = [](uint32_t v) { return [v](GgufWriter& w, const std::string& k) { w.u32(k, v); }; };
  expect_load_error(with("phi3.block_count", [](GgufWriter& w, const std::string& k) { w.str(k, "2"); }), "blk-str",
                    {"'phi3.block_count'", "expected an unsigned integer, found string"});
  expect_load_error(with("phi3.block_count", nullptr), "blk-missing", {"'phi3.block_count' is missing"});
  expect_load_error(with("general.architecture", [](GgufWriter& w, const std::string& k) { w.str(k, "llama"); }), "arch",
                    {"architecture 'llama' is not supported"});
  expect_load_error(with("phi3.attention.head_count", u32(0)), "heads0", {"num_attention_heads"});
  expect_load_error(with("phi3.attention.head_count_kv", u32(3)), "kv3", {"num_key_value_heads"});
  expect_load_error(with("phi3.rope.dimension_count", u32(7)), "rot-odd", {"rope.dimension_count", "found 7"});
  expect_load_error(with("phi3.rope.dimension_count", u32(32)), "rot-big", {"rope.dimension_count", "found 32"});
  expect_load_error(with("tokenizer.ggml.bos_token_id", u32(8)), "bos", {"bos_token_id", "found 8"});
  expect_load_error(with("tokenizer.ggml.scores",
                         [](GgufWriter& w, const std::string& k) { w.numbers<float>(k, GgufWriter::F32, {0, 0}); }),
                    "scores", {"'tokenizer.ggml.scores' has 2 entries, expected 8"});
  expect_load_error(with("tokenizer.ggml.token_type",
                         [](GgufWriter& w, const std::string& k) { w.numbers<int32_t>(k, GgufWriter::I32, {1, 1, 1, 1, 1, 1, 1, 9}); }),
                    "types", {"token_type'[7]", "found 9"});
  expect_load_error(with("tokenizer.ggml.model", [](GgufWriter& w, const std::string& k) { w.str(k, "bert"); }), "tokmodel",
                    {"tokenizer.ggml.model", "\"bert\""});

  TinyModel shape;
  shape.tensors["blk.0.ffn_down.weight"] = {{32, 64}, 0};
  expect_load_error(shape, "shape", {"'blk.0.ffn_down.weight'", "expected shape [64, 32]", "found [32, 64]"});
  TinyModel missing;
  missing.tensors.erase("blk.0.attn_qkv.weight");
  expect_load_error(missing, "missing", {"'blk.0.attn_qkv.weight'", "missing"});
  TinyModel extra;
  extra.tensors["blk.1.ffn_down.weight"] = {{64, 32}, 0};
  expect_load_error(extra, "extra", {"'blk.1.ffn_down.weight'", "layer 1"});
  TinyModel unsupported;
  unsupported.tensors["token_embd.weight"] = {{256, 8}, 10};  // Q2_K
  unsupported.kv["phi3.embedding_length"] = u32(256);
  unsupported.kv["phi3.rope.dimension_count"] = u32(128);
  expect_load_error(unsupported, "q2k", {"'token_embd.weight'", "Q2_K", "cannot read"});
  TinyModel rope;
  rope.tensors["rope_factors_long.weight"] = {{8}, 0};
  rope.tensors["rope_factors_short.weight"] = {{7}, 0};
  expect_load_error(rope, "rope", {"short_factor and long_factor need rotary_dim/2 = 8"});
  TinyModel half_rope;
  half_rope.tensors["rope_factors_long.weight"] = {{8}, 0};
  expect_load_error(half_rope, "rope1", {"'rope_factors_short.weight' is missing"});
}

}  // namespace
}  // namespace phinfer
