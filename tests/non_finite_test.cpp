// Non-finite values are an error, not output: a NaN or infinity in a weight or a quantization
// scale is reported naming the tensor; nothing is silently generated from it.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "format/native_file.h"
#include "phinfer/convert.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

namespace fs = std::filesystem;

// A copy of a shared model folder (symlinks are not enough: the test rewrites bytes).
fs::path copy_model(const std::string& name, const std::string& as) {
  auto dir = test::temp_dir(as);
  for (const auto& e : fs::directory_iterator(test::shared_path("models/" + name)))
    fs::copy_file(e.path(), dir / e.path().filename());
  return dir;
}

void overwrite(const fs::path& file, uint64_t offset, const std::vector<uint8_t>& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good());
}

// File offset of a tensor's first element in a single-file safetensors checkpoint.
uint64_t safetensors_offset(const fs::path& file, const std::string& tensor) {
  std::ifstream f(file, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  auto j = nlohmann::json::parse(header);
  return 8 + n + j[tensor]["data_offsets"][0].get<uint64_t>();
}

std::string generate_error(const fs::path& model) {
  try {
    Pipeline p = Pipeline::load(model);
    GenerationConfig gc;
    gc.max_new_tokens = 4;
    p.generate(std::vector<int32_t>{1, 450, 4996}, gc);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NonFinite, NaNInAFloatWeightNamesTheTensor) {
  auto dir = copy_model("phi3-tiny-mha", "nan-bf16");
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  overwrite(dir / "model.safetensors", safetensors_offset(dir / "model.safetensors", name) + 2 * 77, {0xC0, 0x7F});  // bf16 NaN
  const std::string err = generate_error(dir);
  EXPECT_NE(err.find(name), std::string::npos) << err;
  EXPECT_NE(err.find("non-finite"), std::string::npos) << err;
}

TEST(NonFinite, InfinityInANormIsRefusedAtLoad) {
  auto dir = copy_model("phi3-tiny-mha", "inf-norm");
  const std::string name = "model.layers.0.input_layernorm.weight";
  overwrite(dir / "model.safetensors", safetensors_offset(dir / "model.safetensors", name), {0x80, 0x7F});  // bf16 +inf
  try {
    Pipeline::load(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(NonFinite, NaNQuantizationScalesNameTheTensor) {
  auto out = test::temp_dir("nan-int4") / "model.phi";
  ConvertOptions o;
  o.weight_format = "int4";
  o.plain_rounding = true;
  convert(test::shared_path("models/phi3-tiny-mha"), out, o);
  const std::string name = "model.layers.0.self_attn.o_proj.weight";
  uint64_t offset = 0, size = 0;
  {
    auto f = format::NativeFile::open(out);
    const auto& info = f.require(name).info;
    offset = info["offset"].get<uint64_t>();
    size = info["size"].get<uint64_t>();
  }
  overwrite(out, offset, std::vector<uint8_t>(size, 0xFF));  // codes 15, every fp16 scale and minimum NaN
  const std::string err = generate_error(out);
  EXPECT_NE(err.find(name), std::string::npos) << err;
  EXPECT_NE(err.find("scale"), std::string::npos) << err;
}

TEST(NonFinite, OverflowingLogitsStopWithThePosition) {
  // Finite weights whose product overflows: the final norm (192 values) scaled to 3e38 makes the logits infinite.
  auto dir = copy_model("phi3-tiny-mha", "inf-logits");
  const auto file = dir / "model.safetensors";
  const uint64_t at = safetensors_offset(file, "model.norm.weight");
  std::vector<uint8_t> big;
  for (int i = 0; i < 192; ++i) big.insert(big.end(), {0x61, 0x7F});  // bf16 ~3.0e38
  overwrite(file, at, big);
  const std::string err = generate_error(dir);
  EXPECT_NE(err.find("non-finite logit"), std::string::npos) << err;
  EXPECT_NE(err.find("position 2"), std::string::npos) << err;
}

}  // namespace
}  // namespace phinfer
