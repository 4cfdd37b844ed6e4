#pragma once
// A GGUF file's tokenizer metadata as the equivalent Hugging Face tokenizer.json and
// tokenizer_config.json, so the one tokenizer implementation (phinfer::Tokenizer) serves both:
//   tokenizer.ggml.model "llama" (SentencePiece BPE): tokens + scores + token types ->
//     the Llama/Phi-3 tokenizer.json shape (Prepend/Replace "▁" normalizer, BPE with byte
//     fallback); merges are derived from the scores as transformers' SentencePieceExtractor
//     does (every split of a normal token into two vocabulary pieces, ranked by the token's score);
//   tokenizer.ggml.model "gpt2" (byte-level BPE): tokens + merges, pre-tokenizer by
//     tokenizer.ggml.pre ("gpt-4o": Phi-4's regex; "gpt2"/"default": GPT-2's);
//   control and user-defined tokens become added tokens (control = special); for architecture
//   phi3 they strip whitespace on their right, except <unk>, <s> and <|endoftext|>, as llama.cpp
//   and the Phi tokenizer.json files do;
//   bos/eos/unk/padding ids, add_bos_token/add_eos_token (a TemplateProcessing post-processor)
//   and tokenizer.chat_template go to tokenizer_config.json.
#include <string>

#include "format/gguf.h"

namespace phinfer::tok {

struct TokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// Throws phinfer::Error naming the file and key when the metadata is missing or inconsistent.
TokenizerFiles tokenizer_files_from_gguf(const format::GgufFile& f);

}  // namespace phinfer::tok
