// safetensors parsing and checkpoint folders: every malformed input is rejected with a phinfer::Error
// that names the file, the tensor and what was expected / found. The randomized run over the parser
// is the "safetensors" fuzz harness (tests/fuzz/).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/safetensors.h"
#include "phinfer/error.h"
#include "test_util.h"

namespace phinfer {
namespace {

using format::parse_safetensors;
using format::SafetensorsCheckpoint;
using format::SafetensorsWriter;
using format::TensorView;
using nlohmann::json;

constexpr const char* kSrc = "buf.safetensors";

std::vector<std::byte> u64_le(uint64_t v) {
  std::vector<std::byte> out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
  return out;
}

void set_header_len(std::vector<std::byte>& f, uint64_t len) {
  auto le = u64_le(len);
  std::copy(le.begin(), le.end(), f.begin());
}

// 8-byte little-endian header length + header text + data bytes.
std::vector<std::byte> make_file(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<std::byte> out = u64_le(header.size());
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (uint8_t b : data) out.push_back(static_cast<std::byte>(b));
  return out;
}

std::vector<uint8_t> iota_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 1);
  return v;
}

// The parse must throw phinfer::Error whose message contains every one of `parts`.
void expect_rejected(const std::vector<std::byte>& bytes, std::initializer_list<std::string> parts) {
  try {
    parse_safetensors(bytes, kSrc);
    ADD_FAILURE() << "accepted a malformed file; expected an error containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

void expect_header_rejected(const std::string& header, size_t data_bytes, std::initializer_list<std::string> parts) {
  SCOPED_TRACE(header.substr(0, 200));
  expect_rejected(make_file(header, iota_bytes(data_bytes)), parts);
}

template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

// ---------------------------------------------------------------------------------------------
// parse_safetensors on hand-made buffers

TEST(FormatSafetensors, FewerThanEightBytes) {
  for (size_t n : {0, 1, 5, 7}) {
    std::vector<std::byte> b(n, std::byte{0});
    expect_rejected(b, {kSrc, "truncated", std::to_string(n) + " bytes"});
  }
}

TEST(FormatSafetensors, AbsurdHeaderLength) {
  std::vector<std::byte> b(64, std::byte{'{'});
  set_header_len(b, uint64_t{1} << 60);
  expect_rejected(b, {kSrc, "header length 1152921504606846976", "absurd"});
  auto all_ones = u64_le(~uint64_t{0});
  expect_rejected(all_ones, {kSrc, "18446744073709551615"});
}

TEST(FormatSafetensors, HeaderLengthPastTheEnd) {
  auto b = u64_le(100);
  for (int i = 0; i < 10; ++i) b.push_back(std::byte{' '});
  expect_rejected(b, {kSrc, "truncated", "claims 100 bytes", "only 10 follow"});
  // An otherwise valid file cut inside its header.
  auto good = make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", iota_bytes(4));
  good.resize(20);
  expect_rejected(good, {kSrc, "truncated", "only 12 follow"});
}

TEST(FormatSafetensors, HeaderNotJson) {
  expect_header_rejected("{not json", 0, {kSrc, "not valid JSON"});
  expect_header_rejected("", 0, {kSrc, "not valid JSON"});
  expect_header_rejected(std::string("{\"a\"\0:1}", 8), 0, {kSrc, "not valid JSON"});
  expect_header_rejected("{\"a\": \"\xff\xfe\"}", 0, {kSrc, "not valid JSON"});  // invalid UTF-8
  // Numbers JSON can write but a double cannot hold are malformed too (nlohmann throws
  // out_of_range here, not parse_error).
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", 4, {kSrc});
}

TEST(FormatSafetensors, HeaderNotAnObject) {
  expect_header_rejected("[1, 2]", 0, {kSrc, "JSON object", "array"});
  expect_header_rejected("42", 0, {kSrc, "JSON object"});
  expect_header_rejected("null", 0, {kSrc, "JSON object"});
}

TEST(FormatSafetensors, TensorEntryNotAnObject) {
  expect_header_rejected(R"({"w": [1, 2, 3]})", 0, {kSrc, "'w'", "dtype, shape and data_offsets"});
  expect_header_rejected(R"({"w": {"dtype": "F32", "shape": [1]}})", 4, {kSrc, "'w'", "data_offsets"});
  expect_header_rejected(R"({"w": {"dtype": 3, "shape": [1], "data_offsets": [0, 4]}})", 4, {kSrc, "'w'", "dtype"});
  expect_header_rejected(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 4]}})", 4, {kSrc, "'w'", "shape"});
  expect_header_rejected(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", 4,
                         {kSrc, "'w'", "at most 8"});
}

// One tensor 'w' with the given dtype / shape / data_offsets JSON text over `data` bytes; the parse
// must fail with a message containing the file, "tensor 'w'" and every one of `parts`.
struct OneTensorCase {
  std::string dtype, shape, offsets;
  size_t data;
  std::vector<std::string> parts;
};

void expect_one_tensor_rejected(const std::vector<OneTensorCase>& cases) {
  for (const auto& c : cases) {
    const std::string header = R"({"w": {"dtype": )" + c.dtype + R"(, "shape": )" + c.shape +
                               R"(, "data_offsets": )" + c.offsets + "}}";
    SCOPED_TRACE(header);
    try {
      parse_safetensors(make_file(header, iota_bytes(c.data)), kSrc);
      ADD_FAILURE() << "accepted a malformed tensor entry";
    } catch (const Error& e) {
      const std::string msg = e.what();
      std::vector<std::string> parts = c.parts;
      parts.insert(parts.begin(), {kSrc, "tensor 'w'"});
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    }
  }
}

TEST(FormatSafetensors, UnknownDtype) {
  expect_one_tensor_rejected({
      {R"("F8_E4M3")", "[4]", "[0, 4]", 4, {"unknown dtype 'F8_E4M3'", "expected one of", "BF16"}},
      {R"("f32")", "[1]", "[0, 4]", 4, {"unknown dtype 'f32'"}},
      {R"("")", "[1]", "[0, 4]", 4, {"unknown dtype ''"}},
  });
}

TEST(FormatSafetensors, BadShapeEntries) {
  expect_one_tensor_rejected({
      {R"("F32")", "[-1, 2]", "[0, 8]", 8, {"non-negative integers", "found -1"}},
      {R"("F32")", "[1.5]", "[0, 4]", 4, {"non-negative integers", "found 1.5"}},
      {R"("F32")", R"(["2"])", "[0, 8]", 8, {"non-negative integers", "found \"2\""}},
      {R"("F32")", "[null]", "[0, 4]", 4, {"non-negative integers", "found null"}},
      {R"("F32")", "[[1, 2]]", "[0, 8]", 8, {"non-negative integers", "found [1, 2]"}},
  });
}

TEST(FormatSafetensors, ShapeOverflow) {
  expect_one_tensor_rejected({
      {R"("F32")", "[4294967296, 4294967296]", "[0, 4]", 4, {"overflows"}},
      {R"("F32")", "[4611686018427387904]", "[0, 4]", 4, {"overflows"}},  // numel fits, numel * 4 bytes does not
      {R"("U8")", "[18446744073709551615]", "[0, 4]", 4, {"overflows"}},  // beyond int64
      {R"("U8")", "[3, 4777610854357284176, 0]", "[0, 0]", 4, {"overflows"}},  // empty, but 3 * d overflows int64
  });
}

TEST(FormatSafetensors, DataOffsetsMalformed) {
  expect_one_tensor_rejected({
      {R"("F32")", "[1]", "[0]", 4, {"data_offsets must be [begin, end]", "found [0]"}},
      {R"("F32")", "[1]", "[0, 4, 8]", 8, {"data_offsets must be [begin, end]"}},
      {R"("F32")", "[1]", "[-4, 0]", 4, {"data_offsets must be [begin, end]", "-4"}},
      {R"("F32")", "[1]", "[0, 4.0]", 4, {"data_offsets must be [begin, end]"}},
      {R"("F32")", "[1]", R"("0-4")", 4, {"data_offsets must be [begin, end]", "\"0-4\""}},
  });
}

TEST(FormatSafetensors, DataOffsetsReversedOrPastTheEnd) {
  expect_one_tensor_rejected({
      {R"("F32")", "[1]", "[8, 4]", 8, {"[8, 4]", "out of range"}},
      {R"("F32")", "[4]", "[0, 16]", 12, {"[0, 16]", "out of range", "data section has 12 bytes"}},
      {R"("U8")", "[0]", "[13, 13]", 12, {"[13, 13]", "out of range"}},
      {R"("U8")", "[1]", "[18446744073709551615, 18446744073709551615]", 12, {"out of range"}},
  });
}

TEST(FormatSafetensors, DataSizeDisagreesWithDtypeAndShape) {
  expect_one_tensor_rejected({
      {R"("F32")", "[2, 3]", "[0, 12]", 24, {"span 12 bytes", "F32", "[2,3]", "needs 24"}},
      {R"("BF16")", "[3]", "[0, 8]", 8, {"span 8 bytes", "BF16", "needs 6"}},
      {R"("I64")", "[]", "[0, 4]", 8, {"span 4 bytes", "needs 8"}},
  });
}

TEST(FormatSafetensors, OverlappingTensors) {
  expect_header_rejected(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                         12, {kSrc, "overlap", "'a'", "'b'"});
  // Identical ranges.
  expect_header_rejected(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
                         8, {kSrc, "overlap"});
  // A tensor nested inside a big one, with an empty tensor between them in sorted order.
  expect_header_rejected(R"({"big": {"dtype": "U8", "shape": [100], "data_offsets": [0, 100]},
                             "empty": {"dtype": "U8", "shape": [0], "data_offsets": [10, 10]},
                             "inner": {"dtype": "U8", "shape": [10], "data_offsets": [20, 30]}})",
                         100, {kSrc, "overlap", "'big'", "'inner'"});
  // Three tensors where only the first and third overlap.
  expect_header_rejected(R"({"a": {"dtype": "U8", "shape": [50], "data_offsets": [0, 50]},
                             "b": {"dtype": "U8", "shape": [5], "data_offsets": [10, 15]},
                             "c": {"dtype": "U8", "shape": [10], "data_offsets": [40, 50]}})",
                         50, {kSrc, "overlap"});
}

TEST(FormatSafetensors, MetadataMustBeAnObjectOfStrings) {
  expect_header_rejected(R"({"__metadata__": [1]})", 0, {kSrc, "__metadata__"});
  expect_header_rejected(R"({"__metadata__": {"format": 3}})", 0, {kSrc, "__metadata__", "format"});
}

TEST(FormatSafetensors, DeeplyNestedValuesDoNotOverflowTheStack) {
  // A shape entry nested a million levels deep: the message must not try to print all of it.
  const int depth = 1'000'000;
  std::string nested = std::string(depth, '[') + std::string(depth, ']');
  expect_header_rejected(R"({"w": {"dtype": "F32", "shape": [)" + nested + R"(], "data_offsets": [0, 4]}})", 4,
                         {kSrc, "tensor 'w'", "non-negative integers"});
  expect_header_rejected(R"({"w": )" + nested + "}", 0, {kSrc, "tensor 'w'"});
}

TEST(FormatSafetensors, ValidFileWithMetadata) {
  // Three tensors in non-sorted data order, an empty one, a scalar, and 8-byte padding spaces.
  std::string header = R"({"__metadata__": {"format": "pt", "note": "x"},
    "b16": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
    "f32": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "scalar": {"dtype": "I64", "shape": [], "data_offsets": [24, 32]},
    "empty": {"dtype": "F16", "shape": [0, 5], "data_offsets": [22, 22]}})";
  while ((header.size() + 8) % 8) header += ' ';
  const auto data = iota_bytes(32);
  const auto bytes = make_file(header, data);
  auto t = parse_safetensors(bytes, kSrc);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t.count("__metadata__"), 0u);
  const std::byte* base = bytes.data() + 8 + header.size();

  const TensorView& f = t.at("f32");
  EXPECT_EQ(f.name, "f32");
  EXPECT_EQ(f.file, kSrc);
  EXPECT_EQ(f.dtype, DType::F32);
  EXPECT_EQ(f.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(f.shape_string(), "[2, 2]");
  EXPECT_EQ(f.numel(), 4);
  EXPECT_EQ(f.data.data(), base);
  EXPECT_EQ(f.data.size(), 16u);
  EXPECT_EQ(std::memcmp(f.data.data(), data.data(), 16), 0);

  const TensorView& b = t.at("b16");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(b.data.data(), base + 16);
  EXPECT_EQ(b.data.size(), 6u);
  EXPECT_EQ(std::memcmp(b.data.data(), data.data() + 16, 6), 0);

  const TensorView& s = t.at("scalar");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.shape_string(), "[]");
  EXPECT_EQ(s.data.data(), base + 24);

  const TensorView& e = t.at("empty");
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.data.size(), 0u);
}

TEST(FormatSafetensors, EmptyHeaderObjectIsAValidEmptyFile) {
  EXPECT_TRUE(parse_safetensors(make_file("{}", {}), kSrc).empty());
  EXPECT_TRUE(parse_safetensors(make_file(R"({"__metadata__": {}})", {}), kSrc).empty());
}

// ---------------------------------------------------------------------------------------------
// Writer and checkpoint folders

std::vector<float> floats(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// Writes float32 tensors {name -> values} with the given shapes.
void write_f32(const std::filesystem::path& path,
               const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors, float start = 0) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, shape] : tensors) entries.push_back({name, DType::F32, shape});
  SafetensorsWriter w(path, entries);
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto v = floats(static_cast<size_t>(n), start);
    w.write(v.data(), v.size() * 4);
    start += 1000;
  }
  w.finish();
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

float first_float(const TensorView& t) {
  float f;
  std::memcpy(&f, t.data.data(), 4);
  return f;
}

TEST(FormatSafetensorsWriter, RoundTripAndAlignment) {
  auto dir = test::temp_dir("format_writer");
  write_f32(dir / "model.safetensors", {{"a", {2, 3}}, {"b", {5}}});
  auto ck = SafetensorsCheckpoint::open(dir);
  ASSERT_EQ(ck.tensors().size(), 2u);
  const auto& a = ck.require("a", {2, 3});
  EXPECT_EQ(first_float(a), 0.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data.data()) % 8, 0u) << "data section should be 8-byte aligned";
  EXPECT_EQ(first_float(ck.require("b", {5})), 1000.0f);
  EXPECT_EQ(ck.find("c"), nullptr);
}

TEST(FormatSafetensorsWriter, WrongByteCountIsAnError) {
  auto dir = test::temp_dir("format_writer_count");
  const auto path = dir / "x.safetensors";
  float v[4] = {};
  {
    SafetensorsWriter w(path, {{"a", DType::F32, {3}}});
    w.write(v, 8);
    expect_error([&] { w.finish(); }, {path.string(), "wrote 8 bytes", "declared 12"});
  }
  {
    SafetensorsWriter w(path, {{"a", DType::F32, {3}}});
    expect_error([&] { w.write(v, 16); }, {path.string(), "more tensor data"});
  }
}

TEST(FormatSafetensorsCheckpoint, MissingModelFile) {
  auto dir = test::temp_dir("format_ck_missing");
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {dir.string(), "no model.safetensors or model.safetensors.index.json"});
}

TEST(FormatSafetensorsCheckpoint, ModelFileIsADirectory) {
  auto dir = test::temp_dir("format_ck_isdir");
  std::filesystem::create_directory(dir / "model.safetensors");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {"model.safetensors", "not a regular file"});
}

TEST(FormatSafetensorsCheckpoint, EmptyModelFile) {
  auto dir = test::temp_dir("format_ck_empty");
  write_text(dir / "model.safetensors", "");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {(dir / "model.safetensors").string(), "truncated"});
}

TEST(FormatSafetensorsCheckpoint, RequireChecksPresenceDtypeAndShape) {
  auto dir = test::temp_dir("format_ck_require");
  {
    SafetensorsWriter w(dir / "model.safetensors", {{"ids", DType::I32, {2}}, {"w", DType::BF16, {2, 2}}});
    uint8_t zeros[16] = {};
    w.write(zeros, 16);
    w.finish();
  }
  auto ck = SafetensorsCheckpoint::open(dir);
  const std::string file = (dir / "model.safetensors").string();
  expect_error([&] { ck.require("nope", {1}); }, {dir.string(), "tensor 'nope'", "missing"});
  expect_error([&] { ck.require("ids", {2}); }, {file, "tensor 'ids'", "expected dtype F32, F16 or BF16", "found I32"});
  expect_error([&] { ck.require("w", {2, 3}); }, {file, "tensor 'w'", "expected shape [2, 3], found [2, 2]"});
  expect_error([&] { ck.require("w", {4}); }, {file, "tensor 'w'", "expected shape [4], found [2, 2]"});
  EXPECT_EQ(ck.require("w", {2, 2}).dtype, DType::BF16);
}

// Two shards and an index, as Hugging Face writes them.
std::filesystem::path make_sharded(const std::string& name) {
  auto dir = test::temp_dir(name);
  write_f32(dir / "model-00001-of-00002.safetensors", {{"a", {2, 2}}, {"b", {3}}}, 0);
  write_f32(dir / "model-00002-of-00002.safetensors", {{"c", {4}}, {"d", {1, 1}}}, 5000);
  json index = {{"metadata", {{"total_size", 60}}},
                {"weight_map",
                 {{"a", "model-00001-of-00002.safetensors"},
                  {"b", "model-00001-of-00002.safetensors"},
                  {"c", "model-00002-of-00002.safetensors"},
                  {"d", "model-00002-of-00002.safetensors"}}}};
  write_text(dir / "model.safetensors.index.json", index.dump(2));
  return dir;
}

void rewrite_index(const std::filesystem::path& dir, const std::function<void(json&)>& edit) {
  json index = test::read_json(dir / "model.safetensors.index.json");
  edit(index);
  write_text(dir / "model.safetensors.index.json", index.dump(2));
}

TEST(FormatSafetensorsCheckpoint, ShardedCheckpointResolvesAcrossShards) {
  auto dir = make_sharded("format_ck_sharded");
  auto ck = SafetensorsCheckpoint::open(dir);
  ASSERT_EQ(ck.tensors().size(), 4u);
  EXPECT_EQ(first_float(ck.require("a", {2, 2})), 0.0f);
  EXPECT_EQ(first_float(ck.require("b", {3})), 1000.0f);
  EXPECT_EQ(first_float(ck.require("c", {4})), 5000.0f);
  EXPECT_EQ(first_float(ck.require("d", {1, 1})), 6000.0f);
  EXPECT_NE(ck.find("a")->file.find("model-00001-of-00002.safetensors"), std::string::npos);
  EXPECT_NE(ck.find("d")->file.find("model-00002-of-00002.safetensors"), std::string::npos);
  // A single model.safetensors beside an index is ignored: the index decides.
  write_f32(dir / "model.safetensors", {{"zzz", {1}}});
  auto ck2 = SafetensorsCheckpoint::open(dir);
  EXPECT_EQ(ck2.find("zzz"), nullptr);
  EXPECT_NE(ck2.find("c"), nullptr);
}

TEST(FormatSafetensorsCheckpoint, ShardedIgnoresTensorsTheIndexDoesNotList) {
  auto dir = make_sharded("format_ck_unlisted");
  rewrite_index(dir, [](json& j) { j["weight_map"].erase("b"); });
  auto ck = SafetensorsCheckpoint::open(dir);
  EXPECT_EQ(ck.find("b"), nullptr);
  EXPECT_NE(ck.find("a"), nullptr);
}

TEST(FormatSafetensorsCheckpoint, IndexNamesAMissingShard) {
  auto dir = make_sharded("format_ck_missing_shard");
  rewrite_index(dir, [](json& j) { j["weight_map"]["c"] = "model-00003-of-00003.safetensors"; });
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {"model-00003-of-00003.safetensors", "cannot open"});
}

TEST(FormatSafetensorsCheckpoint, IndexPointsToAShardLackingTheTensor) {
  auto dir = make_sharded("format_ck_wrong_shard");
  rewrite_index(dir, [](json& j) { j["weight_map"]["c"] = "model-00001-of-00002.safetensors"; });
  expect_error([&] { SafetensorsCheckpoint::open(dir); },
               {"model.safetensors.index.json", "tensor 'c'", "model-00001-of-00002.safetensors",
                "does not contain it"});
  auto dir2 = make_sharded("format_ck_ghost_tensor");
  rewrite_index(dir2, [](json& j) { j["weight_map"]["ghost"] = "model-00002-of-00002.safetensors"; });
  expect_error([&] { SafetensorsCheckpoint::open(dir2); }, {"tensor 'ghost'", "does not contain it"});
}

TEST(FormatSafetensorsCheckpoint, IndexPathsMustStayInTheFolder) {
  auto dir = make_sharded("format_ck_escape");
  for (const std::string bad : {"../x", "../format_ck_escape/model-00001-of-00002.safetensors", "/etc/passwd",
                                "sub/model.safetensors", "..\\x", "..", ".", ""}) {
    SCOPED_TRACE(bad);
    rewrite_index(dir, [&](json& j) { j["weight_map"]["a"] = bad; });
    expect_error([&] { SafetensorsCheckpoint::open(dir); },
                 {"model.safetensors.index.json", "weight_map['a']", "not a plain file name"});
  }
  rewrite_index(dir, [&](json& j) { j["weight_map"]["a"] = std::string("model-00001-of-00002.safetensors\0x", 34); });
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {"model.safetensors.index.json", "weight_map['a']"});
}

TEST(FormatSafetensorsCheckpoint, BadIndexJson) {
  auto dir = make_sharded("format_ck_bad_index");
  const auto index = dir / "model.safetensors.index.json";
  write_text(index, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",)");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string(), "malformed JSON"});
  write_text(index, "");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string(), "malformed JSON"});
  write_text(index, R"({"weight_map": {"a": 1e999}})");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string()});
  write_text(index, R"([1, 2])");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string(), "weight_map"});
  write_text(index, R"({"metadata": {}})");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string(), "weight_map"});
  write_text(index, R"({"weight_map": {"a": 3}})");
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {index.string(), "weight_map['a']", "file name"});
}

TEST(FormatSafetensorsCheckpoint, CorruptShardIsNamed) {
  auto dir = make_sharded("format_ck_corrupt_shard");
  const auto shard = dir / "model-00002-of-00002.safetensors";
  auto size = std::filesystem::file_size(shard);
  std::filesystem::resize_file(shard, size - 3);
  expect_error([&] { SafetensorsCheckpoint::open(dir); }, {shard.string(), "tensor 'd'", "out of range"});
}

}  // namespace
}  // namespace phinfer
