#pragma once
// Options every model-running subcommand shares: the model path, threads, sliding window, and
// on-the-fly conversion of a Hugging Face folder (--weight-format ...), cached under --cache-dir.
#include <CLI/CLI.hpp>

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
// --speculative ngram and --draft-tokens (generate, chat, serve).
void add_speculative_options(CLI::App* app, int& draft_tokens);
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
