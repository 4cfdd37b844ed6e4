#pragma once
// Subcommands of the phinfer CLI. Each add_* registers its options on a CLI11 subcommand and
// returns the action to run when that subcommand was chosen.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace phinfer::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command add_generate(CLI::App& root);
Command add_tokenize(CLI::App& root);
Command add_detokenize(CLI::App& root);
Command add_logits(CLI::App& root);
Command add_make_synthetic(CLI::App& root);
Command add_chat(CLI::App& root);
Command add_convert(CLI::App& root);
Command add_perplexity(CLI::App& root);
Command add_compare(CLI::App& root);
Command add_bench(CLI::App& root);
Command add_bench_grammar(CLI::App& root);
Command add_verify(CLI::App& root);
Command add_serve(CLI::App& root);
Command add_devices(CLI::App& root);

// "1,2,3" -> {1, 2, 3}; throws phinfer::Error naming the option on anything else.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option);
// Writes one JSON value and a newline to stdout (invalid UTF-8 replaced, never thrown).
void print_json(const nlohmann::json& j);

}  // namespace phinfer::cli
