#pragma once
// Options every model-running subcommand shares: the model path, threads, sliding window, and
// on-the-fly conversion of a Hugging Face folder (--weight-format ...), cached under --cache-dir.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "phinfer/convert.h"
#include "phinfer/pipeline.h"

namespace phinfer::cli {

struct ModelArgs {
  std::string model;
  PipelineOptions pipeline;
  std::optional<std::string> weight_format;
  ConvertOptions convert;
  std::optional<int> group_size;
  bool sym = false, asym = false;
  std::string cache_dir;
};

void add_model_options(CLI::App* app, ModelArgs& args);
// The generation flags generate and chat share (max tokens, sampling, stop strings, seed).
void add_generation_options(CLI::App* app, GenerationConfig& gen, bool& do_sample);
// --json-schema FILE, --grammar FILE, --json-object: constrained output (generate and chat).
struct GrammarArgs {
  std::optional<std::string> json_schema, gbnf;
  bool json_object = false;
};
void add_grammar_options(CLI::App* app, GrammarArgs& args);
// Reads and compiles the grammar the flags ask for into gen.grammar (errors name the file).
void apply_grammar_options(const GrammarArgs& args, GenerationConfig& gen);
// --speculative ngram|draft:MODEL and --draft-tokens (generate, chat, serve).
void add_speculative_options(CLI::App* app, int& draft_tokens, std::filesystem::path& draft_model);
// Adds the conversion flags shared by `convert` and the on-the-fly path (not the format itself).
void add_quantization_options(CLI::App* app, ConvertOptions& convert, std::optional<int>& group_size, bool& sym, bool& asym);
// Fills convert.group_size / symmetric from the parsed flags.
void finish_quantization_options(ConvertOptions& convert, const std::optional<int>& group_size, bool sym, bool asym);
Pipeline load_pipeline(ModelArgs& args);
// The tokenizer of a Hugging Face folder or of a phinfer model file.
Tokenizer load_tokenizer(const std::string& model);
std::string default_cache_dir();
// A one-line progress bar on stderr: "[=====>     ]  45% name".
void print_progress(double fraction, const std::string& label);

}  // namespace phinfer::cli
