// GGUF through the converter and the pipeline's --weight-format: a .phi converted with the GGUF's
// own types ("source") computes exactly what the GGUF loaded directly does, a fp32 conversion
// exactly what the exact path does, and Pipeline::load converts a GGUF file on the fly (cached),
// with the tokenizer, chat template and special tokens carried over.
#include <gtest/gtest.h>

#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/convert.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

const std::vector<int32_t> kPrompt = {1, 32010, 15043, 29892, 920, 526, 366, 29973, 32007, 32001};

std::vector<float> last_logits(const model::Phi3Model& m) {
  kernels::ThreadPool pool(1);
  model::Sequence seq(m, pool);
  const std::vector<int64_t> last = {static_cast<int64_t>(kPrompt.size()) - 1};
  return seq.append_with_logits(kPrompt, last);
}

std::filesystem::path fixture() { return test::shared_path("models/gguf/phi3-tiny-k256-Q4_K_M.gguf"); }

TEST(GgufConvert, SourceFormatKeepsTheNativeLayouts) {
  const auto out = test::temp_dir("gguf_convert") / "source.phi";
  ConvertOptions o;
  o.weight_format = "source";
  const ConvertSummary s = convert(fixture(), out, o);
  int int4 = 0, int8 = 0;
  for (const auto& t : s.tensors) {
    int4 += t.format == "int4";
    int8 += t.format == "int8";
  }
  EXPECT_EQ(int4, 7);  // the Q4_K matrices
  EXPECT_EQ(int8, 3);  // the Q6_K ones
  const model::Phi3Model direct(model::LoadedWeights::open(fixture()), {});
  const model::Phi3Model converted(model::LoadedWeights::open(out), {});
  EXPECT_EQ(last_logits(direct), last_logits(converted));
  const Pipeline p = Pipeline::load(out);
  EXPECT_EQ(p.tokenizer().encode("Hello", true), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(p.config().sliding_window, 2047);
}

TEST(GgufConvert, Fp32IsTheExactPathAlsoThroughThePipelineCache) {
  const model::Phi3Model exact(model::LoadedWeights::open(fixture(), model::GgufWeights::Dequantize), {});
  const auto reference = last_logits(exact);
  PipelineOptions po;
  po.convert = ConvertOptions{};
  po.convert->weight_format = "fp32";
  po.cache_dir = test::temp_dir("gguf_cache");
  po.threads = 1;
  const Pipeline p = Pipeline::load(fixture(), po);
  EXPECT_NE(p.model_path(), fixture());  // the cached .phi
  const std::vector<int64_t> last = {static_cast<int64_t>(kPrompt.size()) - 1};
  EXPECT_EQ(p.logits(kPrompt, last), reference);
  EXPECT_EQ(p.stop_ids({}), (std::vector<int32_t>{32000, 32007}));
  // The file's Phi-3 template: <s><|user|>\nHi<|end|>\n<|assistant|>\n (the newlines stripped by the tokens).
  EXPECT_EQ(p.encode_chat({{"user", "Hi"}}, true), (std::vector<int32_t>{1, 32010, 6324, 32007, 32001}));
}

}  // namespace
}  // namespace phinfer
