#pragma once
// The harness of each target (one file each under tests/fuzz/).
#include "fuzz/fuzz.h"

namespace phinfer::fuzz {

std::unique_ptr<Harness> make_safetensors(const Context& ctx);
std::unique_ptr<Harness> make_config(const Context& ctx);
std::unique_ptr<Harness> make_tokenizer(const Context& ctx);
std::unique_ptr<Harness> make_template(const Context& ctx);
std::unique_ptr<Harness> make_native(const Context& ctx);
std::unique_ptr<Harness> make_chatload(const Context& ctx);
std::unique_ptr<Harness> make_grammar(const Context& ctx);
std::unique_ptr<Harness> make_openai_request(const Context& ctx);
std::unique_ptr<Harness> make_gguf(const Context& ctx);

// Reads a whole file (seeds from ../shared); throws std::runtime_error when missing.
std::string read_file(const std::filesystem::path& p);

}  // namespace phinfer::fuzz
