// phinfer tokenize / detokenize / logits: the building blocks other tools script against.
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "phinfer/tokenizer.h"

namespace phinfer::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::optional<std::string> text;
  bool no_special = false, jsonl = false;
};

int run_tokenize(const TokenizeArgs& a) {
  Tokenizer tok = load_tokenizer(a.model);
  const bool add_special = !a.no_special;
  if (!a.jsonl) {
    if (!a.text) throw Error("give the TEXT to tokenize, or --jsonl to read {\"text\": ...} lines from stdin");
    print_json({{"ids", tok.encode(*a.text, add_special)}});
    return 0;
  }
  if (a.text) throw Error("--jsonl reads standard input; do not also give TEXT");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error("stdin line " + std::to_string(line_no) + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw Error("stdin line " + std::to_string(line_no) + ": expected an object {\"text\": \"...\"}");
    print_json({{"ids", tok.encode(j["text"].get<std::string>(), add_special)}});
  }
  return 0;
}

struct DetokenizeArgs {
  std::string model, ids;
  bool skip_special = false;
};

int run_detokenize(const DetokenizeArgs& a) {
  Tokenizer tok = load_tokenizer(a.model);
  std::string text = tok.decode(parse_id_list(a.ids, "IDS"), a.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

struct LogitsArgs {
  ModelArgs model;
  std::string prompt_ids, positions = "last";
};

// The positions to print: each inside the prompt and given once, so the output (one vocabulary-sized
// row per position) is bounded by the prompt, whatever the command line repeats.
std::vector<int64_t> parse_positions(const std::string& text, int64_t n) {
  std::vector<int64_t> positions;
  if (text == "last") {
    positions.push_back(n - 1);
  } else if (text == "all") {
    for (int64_t i = 0; i < n; ++i) positions.push_back(i);
  } else {
    std::vector<bool> seen(static_cast<size_t>(n), false);
    for (int32_t p : parse_id_list(text, "--positions")) {
      if (p >= n)
        throw Error("--positions: position " + std::to_string(p) + " is outside the " + std::to_string(n) +
                    " ids of --prompt-ids (expected 0.." + std::to_string(n - 1) + ")");
      if (seen[static_cast<size_t>(p)]) throw Error("--positions: position " + std::to_string(p) + " is given twice");
      seen[static_cast<size_t>(p)] = true;
      positions.push_back(p);
    }
  }
  return positions;
}

int run_logits(LogitsArgs& a) {
  // The arguments are checked before the model is loaded.
  std::vector<int32_t> ids = parse_id_list(a.prompt_ids, "--prompt-ids");
  const int64_t n = static_cast<int64_t>(ids.size());
  const std::vector<int64_t> positions = parse_positions(a.positions, n);
  Pipeline pipe = load_pipeline(a.model);
  std::vector<float> logits = pipe.logits(ids, positions);
  const int64_t vocab = pipe.config().vocab_size;
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < positions.size(); ++i) {
    auto begin = logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab;
    out[std::to_string(positions[i])] = std::vector<float>(begin, begin + vocab);
  }
  print_json({{"logits", out}});
  return 0;
}

}  // namespace

Command add_tokenize(CLI::App& root) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* app = root.add_subcommand("tokenize", "Print the token ids of a text as {\"ids\":[...]}");
  app->add_option("-m,--model", a->model, "Folder with tokenizer.json")->required();
  app->add_option("text", a->text, "Text to tokenize");
  app->add_flag("--no-special", a->no_special, "Do not add special tokens such as <s>");
  app->add_flag("--jsonl", a->jsonl, "Read {\"text\": ...} lines from stdin, print one {\"ids\":[...]} line each");
  return {app, [a] { return run_tokenize(*a); }};
}

Command add_detokenize(CLI::App& root) {
  auto a = std::make_shared<DetokenizeArgs>();
  CLI::App* app = root.add_subcommand("detokenize", "Print the text of comma-separated token ids");
  app->add_option("-m,--model", a->model, "Folder with tokenizer.json")->required();
  app->add_option("ids", a->ids, "Token ids, e.g. 1,2,3")->required();
  app->add_flag("--skip-special", a->skip_special, "Leave out special tokens");
  return {app, [a] { return run_detokenize(*a); }};
}

Command add_logits(CLI::App& root) {
  auto a = std::make_shared<LogitsArgs>();
  CLI::App* app = root.add_subcommand("logits", "Print next-token logits: {\"logits\":{\"<pos>\":[...]}}");
  add_model_options(app, a->model);
  app->add_option("--prompt-ids", a->prompt_ids, "Token ids, e.g. 1,2,3")->required();
  app->add_option("--positions", a->positions, "last, all, or comma-separated positions")->capture_default_str();
  return {app, [a] { return run_logits(*a); }};
}

}  // namespace phinfer::cli
