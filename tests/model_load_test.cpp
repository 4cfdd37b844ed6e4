// Loading a checkpoint folder that is subtly wrong: each failure names the file, the tensor, what
// was expected and what was found. The folders are copies of ../shared/models/phi3-tiny-mha with a
// rewritten model.safetensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/safetensors.h"
#include "kernels/thread_pool.h"
#include "model/phi3.h"
#include "model/sequence.h"
#include "phinfer/error.h"
#include "test_util.h"

namespace phinfer {
namespace {

using format::SafetensorsCheckpoint;
using format::SafetensorsWriter;
using nlohmann::json;

constexpr const char* kModel = "models/phi3-tiny-mha";

// A tensor to write: the original bytes, or replacement bytes when the dtype or shape changes.
struct Tensor {
  SafetensorsWriter::Entry entry;
  std::span<const std::byte> data;
  std::vector<std::byte> owned;

  void replace(DType dtype, std::vector<int64_t> shape) {
    size_t n = dtype_size(dtype);
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    entry.dtype = dtype;
    entry.shape = std::move(shape);
    owned.assign(n, std::byte{0});
    data = owned;
  }
};
using Tensors = std::vector<Tensor>;

const SafetensorsCheckpoint& original() {
  static const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(test::shared_path(kModel));
  return ck;
}

Tensors original_tensors() {
  Tensors out;
  for (const auto& [name, t] : original().tensors()) out.push_back({{name, t.dtype, t.shape}, t.data, {}});
  return out;
}

void write_safetensors(const std::filesystem::path& path, const Tensors& tensors) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& t : tensors) entries.push_back(t.entry);
  SafetensorsWriter w(path, entries);
  for (const auto& t : tensors) w.write(t.data.data(), t.data.size());
  w.finish();
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

// A fresh folder: the model's config files (config.json edited by `config_edit`) and a
// model.safetensors rewritten from the original after `edit`.
std::filesystem::path make_model(const std::string& name, const std::function<void(Tensors&)>& edit,
                                 const std::function<void(json&)>& config_edit = {}) {
  const auto src = test::shared_path(kModel);
  auto dir = test::temp_dir(name);
  json config = test::read_json(src / "config.json");
  if (config_edit) config_edit(config);
  write_text(dir / "config.json", config.dump(2));
  std::filesystem::copy_file(src / "generation_config.json", dir / "generation_config.json");
  Tensors tensors = original_tensors();
  if (edit) edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

Tensor& find(Tensors& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.entry.name == name) return t;
  throw std::runtime_error("test setup: no tensor " + name);
}

void drop(Tensors& ts, const std::string& name) {
  std::erase_if(ts, [&](const Tensor& t) { return t.entry.name == name; });
}

void expect_load_error(const std::filesystem::path& dir, const std::vector<std::string>& parts) {
  try {
    model::Phi3Model::load(dir);
    ADD_FAILURE() << "loaded a bad checkpoint; expected an error containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

// Last-position logits for a short prompt.
std::vector<float> logits_of(const model::Phi3Model& m) {
  kernels::ThreadPool pool(2);
  model::Sequence seq(m, pool);
  const std::vector<int32_t> prompt = {1, 450, 4996, 17354, 1701};
  return seq.append(prompt);
}

TEST(ModelLoad, RewrittenCopyLoadsAndMatchesTheOriginal) {
  auto dir = make_model("model_load_copy", {});
  auto m = model::Phi3Model::load(dir);
  auto ref = model::Phi3Model::load(test::shared_path(kModel));
  EXPECT_EQ(m->config().hidden_size, 192);
  EXPECT_EQ(logits_of(*m), logits_of(*ref));
}

TEST(ModelLoad, ShardedCopyLoadsAndMatchesTheOriginal) {
  const auto src = test::shared_path(kModel);
  auto dir = test::temp_dir("model_load_sharded");
  std::filesystem::copy_file(src / "config.json", dir / "config.json");
  Tensors all = original_tensors();
  Tensors a(all.begin(), all.begin() + static_cast<ptrdiff_t>(all.size() / 2));
  Tensors b(all.begin() + static_cast<ptrdiff_t>(all.size() / 2), all.end());
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (const auto& [shard, ts] : {std::pair{"model-00001-of-00002.safetensors", &a},
                                  std::pair{"model-00002-of-00002.safetensors", &b}}) {
    write_safetensors(dir / shard, *ts);
    for (const auto& t : *ts) index["weight_map"][t.entry.name] = shard;
  }
  write_text(dir / "model.safetensors.index.json", index.dump(2));
  auto m = model::Phi3Model::load(dir);
  auto ref = model::Phi3Model::load(src);
  EXPECT_EQ(logits_of(*m), logits_of(*ref));
}

TEST(ModelLoad, MissingTensorIsNamed) {
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  auto dir = make_model("model_load_missing", [&](Tensors& ts) { drop(ts, name); });
  expect_load_error(dir, {dir.string(), "tensor '" + name + "'", "missing"});
}

TEST(ModelLoad, WrongShapeSaysExpectedAndFound) {
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  auto dir = make_model("model_load_shape", [&](Tensors& ts) { find(ts, name).replace(DType::BF16, {192, 511}); });
  expect_load_error(dir, {(dir / "model.safetensors").string(), "tensor '" + name + "'",
                          "expected shape [192, 512], found [192, 511]"});
  // Transposed.
  auto dir2 = make_model("model_load_transposed", [&](Tensors& ts) { find(ts, name).replace(DType::BF16, {512, 192}); });
  expect_load_error(dir2, {"tensor '" + name + "'", "expected shape [192, 512], found [512, 192]"});
  // A norm with an extra dimension.
  auto dir3 = make_model("model_load_norm_rank",
                         [&](Tensors& ts) { find(ts, "model.norm.weight").replace(DType::BF16, {1, 192}); });
  expect_load_error(dir3, {"tensor 'model.norm.weight'", "expected shape [192], found [1, 192]"});
}

TEST(ModelLoad, WrongDtypeIsNamed) {
  const std::string name = "model.layers.0.self_attn.qkv_proj.weight";
  auto dir = make_model("model_load_dtype", [&](Tensors& ts) { find(ts, name).replace(DType::I32, {576, 192}); });
  expect_load_error(dir, {(dir / "model.safetensors").string(), "tensor '" + name + "'",
                          "expected dtype F32, F16 or BF16, found I32"});
}

TEST(ModelLoad, OtherFloatDtypesLoad) {
  // F32 and F16 weights are accepted as well as BF16 (values here are zero: only loading is checked).
  auto dir = make_model("model_load_f32_f16", [](Tensors& ts) {
    find(ts, "model.layers.0.mlp.down_proj.weight").replace(DType::F32, {192, 512});
    find(ts, "model.norm.weight").replace(DType::F16, {192});
  });
  EXPECT_NO_THROW(model::Phi3Model::load(dir));
}

TEST(ModelLoad, LmHeadMissingWithUntiedEmbeddings) {
  auto dir = make_model("model_load_no_lm_head", [](Tensors& ts) { drop(ts, "lm_head.weight"); });
  expect_load_error(dir, {dir.string(), "'lm_head.weight'", "missing", "tie_word_embeddings false"});
}

TEST(ModelLoad, TiedEmbeddingsNeedNoLmHead) {
  auto dir = make_model("model_load_tied", [](Tensors& ts) { drop(ts, "lm_head.weight"); },
                        [](json& c) { c["tie_word_embeddings"] = true; });
  std::unique_ptr<model::Phi3Model> m;
  ASSERT_NO_THROW(m = model::Phi3Model::load(dir));
  EXPECT_TRUE(m->config().tie_word_embeddings);
  auto logits = logits_of(*m);
  ASSERT_EQ(logits.size(), 32064u);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(ModelLoad, ConfigDisagreesWithTensors) {
  // hidden_size 256 (head_dim 128): the embedding is the first tensor checked.
  auto dir = make_model("model_load_config_hidden", {}, [](json& c) { c["hidden_size"] = 256; });
  expect_load_error(dir, {"tensor 'model.embed_tokens.weight'", "expected shape [32064, 256], found [32064, 192]"});
  // One layer more than the checkpoint has.
  auto dir2 = make_model("model_load_config_layers", {}, [](json& c) { c["num_hidden_layers"] = 3; });
  expect_load_error(dir2, {"tensor 'model.layers.2.", "missing"});
  // GQA declared for an MHA checkpoint: the fused qkv projection has the wrong height.
  auto dir3 = make_model("model_load_config_gqa", {}, [](json& c) { c["num_key_value_heads"] = 1; });
  expect_load_error(dir3, {"tensor 'model.layers.0.self_attn.qkv_proj.weight'", "expected shape [384, 192], found [576, 192]"});
}

TEST(ModelLoad, TruncatedModelFile) {
  const auto src = test::shared_path(kModel);
  for (double fraction : {0.5, 0.0001, 0.99999}) {
    SCOPED_TRACE(fraction);
    auto dir = test::temp_dir("model_load_truncated");
    std::filesystem::copy_file(src / "config.json", dir / "config.json");
    const auto size = std::filesystem::file_size(src / "model.safetensors");
    std::vector<char> bytes(static_cast<size_t>(static_cast<double>(size) * fraction));
    std::ifstream(src / "model.safetensors", std::ios::binary).read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(dir / "model.safetensors", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    expect_load_error(dir, {(dir / "model.safetensors").string()});
  }
  // Cut in half: the header is whole, the data is not; the message says which tensor runs past the end.
  auto dir = test::temp_dir("model_load_truncated_half");
  std::filesystem::copy_file(src / "config.json", dir / "config.json");
  std::filesystem::copy_file(src / "model.safetensors", dir / "model.safetensors");
  std::filesystem::permissions(dir / "model.safetensors", std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::filesystem::resize_file(dir / "model.safetensors", std::filesystem::file_size(src / "model.safetensors") / 2);
  expect_load_error(dir, {(dir / "model.safetensors").string(), "tensor '", "out of range"});
}

TEST(ModelLoad, MissingFilesAreNamed) {
  auto dir = test::temp_dir("model_load_empty");
  expect_load_error(dir, {(dir / "config.json").string(), "cannot open"});
  std::filesystem::copy_file(test::shared_path(kModel) / "config.json", dir / "config.json");
  expect_load_error(dir, {dir.string(), "no model.safetensors"});
  expect_load_error(dir / "nope", {(dir / "nope").string() + ": not a"});
}

}  // namespace
}  // namespace phinfer
