#include "cli/model_options.h"

#include "model/phi3.h"

#include <cstdio>
#include <cstdlib>

#include "format/file_io.h"
#include "format/gguf.h"
#include "format/native_file.h"
#include "grammar/gbnf.h"
#include "tokenizer/gguf_vocab.h"
#include "phinfer/error.h"

namespace phinfer::cli {

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/phinfer";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/phinfer";
  return ".phinfer-cache";
}

void print_progress(double fraction, const std::string& label) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(kWidth), ' ');
  for (int i = 0; i < filled && i < kWidth; ++i) bar[static_cast<size_t>(i)] = '=';
  if (filled < kWidth) bar[static_cast<size_t>(filled)] = '>';
  std::fprintf(stderr, "\r[%s] %3d%% %-48.48s", bar.c_str(), static_cast<int>(fraction * 100), label.c_str());
  if (fraction >= 1.0) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void add_quantization_options(CLI::App* app, ConvertOptions& c, std::optional<int>& group_size, bool& sym, bool& asym) {
  app->add_option("--group-size", group_size, "Weights per quantization group; -1 = per output channel (int4 default 128)");
  app->add_flag("--sym", sym, "Symmetric quantization (scale only)");
  app->add_flag("--asym", asym, "Asymmetric quantization (scale and minimum; the default)");
  app->add_option("--ratio", c.ratio, "int4: share of the layers' weights in int4, the rest in --backup-precision")
      ->capture_default_str();
  app->add_option("--backup-precision", c.backup_precision, "int8 or fp16")->capture_default_str();
  app->add_option("--embedding-format", c.embedding_format, "auto, fp32, fp16, bf16, int8 or int4")->capture_default_str();
  app->add_option("--lm-head-format", c.lm_head_format, "auto, fp32, fp16, bf16, int8 or int4")->capture_default_str();
  app->add_flag("--plain-rounding", c.plain_rounding, "Min/max rounding instead of the error-minimizing search");
}

void finish_quantization_options(ConvertOptions& c, const std::optional<int>& group_size, bool sym, bool asym) {
  if (sym && asym) throw Error("give only one of --sym and --asym");
  c.group_size = group_size;
  c.symmetric = sym;
}

void add_model_options(CLI::App* app, ModelArgs& a) {
  app->add_option("-m,--model", a.model, "Hugging Face checkpoint folder, phinfer model file or GGUF file")->required();
  app->add_option("--device", a.pipeline.device, "Where to run: cpu, gpu (the best Vulkan device), gpu:N (see `phinfer devices`), or auto (a GPU when one is present and the model fits, else the CPU)")
      ->capture_default_str();
  app->add_option("--threads", a.pipeline.threads, "Worker threads (0 = one per physical core)")->capture_default_str();
  app->add_option("--sliding-window", a.pipeline.sliding_window, "Attention window: auto (as config.json), off, or a number of keys")
      ->capture_default_str();
  app->add_option("--kv-cache", a.pipeline.kv_cache_dtype, "KV cache precision: f32 (exact), f16 or q8 (int8 with a scale per head and position)")->capture_default_str();
  app->add_option("--weight-format", a.weight_format,
                  "Convert the model on the fly: fp32, fp16, bf16, int8 or int4 (cached under --cache-dir; a GGUF file is dequantized exactly first, so fp32 is its exact path)");
  add_quantization_options(app, a.convert, a.group_size, a.sym, a.asym);
  app->add_option("--cache-dir", a.cache_dir, "Where converted models are cached (default " + default_cache_dir() + ")");
}

void add_generation_options(CLI::App* app, GenerationConfig& gen, bool& do_sample) {
  app->add_option("--max-new-tokens", gen.max_new_tokens, "Most tokens to generate (per answer in chat)")->capture_default_str();
  app->add_flag("--do-sample", do_sample, "Sample instead of greedy decoding");
  app->add_option("--temperature", gen.temperature, "Sampling temperature (with --do-sample)")->capture_default_str();
  app->add_option("--top-k", gen.top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
  app->add_option("--top-p", gen.top_p, "Keep the smallest set of tokens with this total probability")->capture_default_str();
  app->add_option("--min-p", gen.min_p, "Drop tokens below this fraction of the best token's probability (0 = off)")
      ->capture_default_str();
  app->add_option("--repetition-penalty", gen.repetition_penalty,
                  "Divide the logits of tokens already in the sequence by this (1 = off)")
      ->capture_default_str();
  app->add_option("--stop", gen.stop_strings, "Stop when the text contains this string (repeatable)");
  app->add_option("--seed", gen.seed, "Random seed: the same seed gives the same text")->capture_default_str();
}

void add_speculative_options(CLI::App* app, int& draft_tokens, std::filesystem::path& draft_model) {
  app->add_option_function<std::string>(
         "--speculative",
         [&draft_tokens, &draft_model](const std::string& how) {
           if (draft_tokens == 0) draft_tokens = 4;
           if (how.rfind("draft:", 0) == 0) draft_model = how.substr(6);
         },
         "Speculative decoding (output unchanged when greedy; the same distribution when sampling): ngram (prompt "
         "lookup: drafts copied from earlier text) or draft:MODEL (a smaller model with the same tokenizer drafts "
         "autoregressively: a phinfer model file, GGUF file or Hugging Face folder, loaded with this model's options, "
         "--weight-format included for a folder). The drafts are checked in one pass.")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "ngram") return "";
            if (v.rfind("draft:", 0) == 0 && v.size() > 6) return "";
            return "expected ngram or draft:MODEL, found '" + v + "'";
          },
          "ngram|draft:MODEL"));
  app->add_option("--draft-tokens", draft_tokens, "Draft tokens per step for --speculative (default 4; max 32)");
}

void add_grammar_options(CLI::App* app, GrammarArgs& args) {
  auto* schema = app->add_option("--json-schema", args.json_schema,
                                 "The output is JSON valid under this JSON Schema file (generation ends where it is complete)");
  auto* gbnf = app->add_option("--grammar", args.gbnf, "The output matches this GBNF grammar file (llama.cpp's form)");
  auto* object = app->add_flag("--json-object", args.json_object, "The output is one JSON object");
  schema->excludes(gbnf)->excludes(object);
  gbnf->excludes(object);
}

void apply_grammar_options(const GrammarArgs& args, GenerationConfig& gen) {
  if (args.json_schema)
    gen.grammar = Grammar::from_json_schema(format::read_whole_file(*args.json_schema, grammar::kMaxGrammarBytes), *args.json_schema);
  if (args.gbnf) gen.grammar = Grammar::from_gbnf(format::read_whole_file(*args.gbnf, grammar::kMaxGrammarBytes), *args.gbnf);
  if (args.json_object) gen.grammar = Grammar::any_json_object();
}

Pipeline load_pipeline(ModelArgs& a) {
  if (a.weight_format) {
    a.convert.weight_format = *a.weight_format;
    finish_quantization_options(a.convert, a.group_size, a.sym, a.asym);
    a.convert.progress = print_progress;
    a.pipeline.convert = a.convert;
    a.pipeline.cache_dir = a.cache_dir.empty() ? default_cache_dir() : a.cache_dir;
  }
  try {
    model::SlidingWindow::parse(a.pipeline.sliding_window);
  } catch (const Error& e) {
    throw Error(std::string("--sliding-window: ") + e.what());
  }
  return Pipeline::load(a.model, a.pipeline);
}

}  // namespace phinfer::cli

namespace phinfer::cli {

Tokenizer load_tokenizer(const std::string& model) {
  if (format::is_gguf_file(model)) {
    const tok::TokenizerFiles files = tok::tokenizer_files_from_gguf(format::GgufFile::open(model));
    return Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, model);
  }
  if (!format::is_native_file(model)) return Tokenizer::from_dir(model);
  const auto file = format::NativeFile::open(model);
  const auto& meta = file.metadata();
  if (!meta.contains("tokenizer") || !meta["tokenizer"].contains("tokenizer.json"))
    throw Error(model + ": the model file holds no tokenizer");
  const auto& t = meta["tokenizer"];
  return Tokenizer::from_json_text(t["tokenizer.json"].get<std::string>(),
                                   t.contains("tokenizer_config.json") ? t["tokenizer_config.json"].get<std::string>() : "", model);
}

}  // namespace phinfer::cli
