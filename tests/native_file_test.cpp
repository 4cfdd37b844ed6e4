// The phinfer model file container: round trip, alignment, integrity checks, malformed files.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "format/native_file.h"
#include "kernels/quant.h"
#include "phinfer/error.h"
#include "test_util.h"

namespace phinfer::format {
namespace {

using nlohmann::json;

std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
  return v;
}

// The packed size of the sample's q4 tensor "b" ([7, 9], groups of 4 columns, symmetric).
size_t sample_b_size() { return kernels::quantized_size(kernels::WeightFormat::Int4, 7, 9, 4, true); }

std::filesystem::path write_sample(const std::filesystem::path& dir) {
  auto path = dir / "m.phi";
  std::vector<NativeFileWriter::TensorDecl> decls = {
      {"a", {{"format", "f32"}, {"shape", {3, 5}}}, 60},
      {"empty", {{"format", "f32"}, {"shape", {0}}}, 0},
      {"b", {{"format", "q4"}, {"shape", {7, 9}}, {"group_size", 4}, {"symmetric", true}}, sample_b_size()},
  };
  NativeFileWriter w(path, {{"config", {{"hidden_size", 5}}}}, decls);
  auto a = random_bytes(60, 1), b = random_bytes(sample_b_size(), 2);
  w.write(a);
  w.write(std::span(b).first(100));  // tensors may arrive in pieces
  w.write(std::span(b).subspan(100));
  w.finish();
  return path;
}

TEST(NativeFile, RoundTripAlignedAndVerified) {
  auto dir = test::temp_dir("native_roundtrip");
  auto path = write_sample(dir);
  EXPECT_TRUE(is_native_file(path));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);  // no partial file left
  auto f = NativeFile::open(path);
  EXPECT_EQ(f.metadata()["config"]["hidden_size"], 5);
  ASSERT_EQ(f.tensors().size(), 3u);
  auto a = random_bytes(60, 1), b = random_bytes(sample_b_size(), 2);
  const auto& ta = f.require("a");
  const auto& tb = f.require("b");
  EXPECT_TRUE(std::equal(ta.data.begin(), ta.data.end(), a.begin(), a.end()));
  EXPECT_TRUE(std::equal(tb.data.begin(), tb.data.end(), b.begin(), b.end()));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ta.data.data()) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tb.data.data()) % 64, 0u);
  EXPECT_EQ(tb.info["format"], "q4");
  EXPECT_NO_THROW(f.verify());
  EXPECT_THROW(f.require("missing"), Error);
}

void corrupt_at(const std::filesystem::path& p, uint64_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5a));
}

std::string error_of(const std::filesystem::path& p, bool verify = false) {
  try {
    auto f = NativeFile::open(p);
    if (verify) f.verify();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NativeFile, RejectsCorruptAndTruncatedFiles) {
  auto dir = test::temp_dir("native_bad");
  auto good = write_sample(dir);
  const auto size = std::filesystem::file_size(good);
  auto fresh = [&](const std::string& name) {
    auto p = dir / name;
    std::filesystem::copy_file(good, p, std::filesystem::copy_options::overwrite_existing);
    return p;
  };
  auto p = fresh("magic.phi");
  corrupt_at(p, 0);
  EXPECT_NE(error_of(p).find("not a phinfer model file"), std::string::npos);
  p = fresh("version.phi");
  corrupt_at(p, 8);
  EXPECT_NE(error_of(p).find("version"), std::string::npos);
  p = fresh("json.phi");
  corrupt_at(p, 70);
  EXPECT_NE(error_of(p).find("checksum"), std::string::npos);
  p = fresh("data.phi");
  corrupt_at(p, NativeFile::open(good).require("b").info["offset"].get<uint64_t>() + 10);
  EXPECT_EQ(error_of(p), "");  // loads: tensor data is checked by verify()
  EXPECT_NE(error_of(p, true).find("tensor 'b' is corrupt"), std::string::npos);
  for (uint64_t cut : {uint64_t{0}, uint64_t{10}, uint64_t{63}, uint64_t{100}, size - 1}) {
    p = fresh("cut.phi");
    std::filesystem::resize_file(p, cut);
    std::string e = error_of(p);
    EXPECT_NE(e, "") << "cut at " << cut;
    EXPECT_NE(e.find("cut.phi"), std::string::npos) << e;
  }
  // Random garbage of many sizes never crashes.
  for (uint64_t seed = 0; seed < 200; ++seed) {
    p = dir / "garbage.phi";
    auto bytes = random_bytes(seed * 7 % 300, seed);
    if (bytes.size() >= 8) std::memcpy(bytes.data(), kNativeMagic, 8);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_NE(error_of(p), "");
  }
}

TEST(NativeFile, WriterChecksDeclaredSizes) {
  auto dir = test::temp_dir("native_writer");
  {
    NativeFileWriter w(dir / "x.phi", json::object(), {{"a", json::object(), 10}});
    auto bytes = random_bytes(11, 3);
    EXPECT_THROW(w.write(bytes), Error);
  }
  {
    NativeFileWriter w(dir / "y.phi", json::object(), {{"a", json::object(), 10}});
    auto bytes = random_bytes(4, 3);
    w.write(bytes);
    EXPECT_THROW(w.finish(), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "y.phi"));
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find("y.phi"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace phinfer::format
