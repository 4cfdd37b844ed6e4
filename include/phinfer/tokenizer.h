#pragma once
// Tokenizer built from a Hugging Face tokenizer.json (+ tokenizer_config.json): it follows what the
// file declares (normalizer, pre-tokenizer, model, post-processor, decoder, added tokens).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "phinfer/export.h"

namespace phinfer {

namespace tok {
class DecodeStream;
}

// Notes on semantics (what the goldens pin down):
// - encode() follows the tokenizer.json post_processor for special tokens, as Hugging Face
//   tokenizers (Rust) and transformers.js do. tokenizer_config.json's add_bos_token /
//   add_eos_token are not consulted: Python transformers rewrites the post-processor from them
//   when it loads a Llama tokenizer, which only matters where the two disagree (e.g. the raw
//   Phi-3-mini-128k 2024-04 files: add_bos_token true, post-processor adds nothing).
// - Text that is not valid UTF-8 is encoded as if each ill-formed byte sequence were U+FFFD.
// - decode(): a run of <0xNN> byte tokens that is not valid UTF-8 becomes one U+FFFD per byte
//   (HF tokenizers' ByteFallback); byte-level (GPT-2) text uses one U+FFFD per ill-formed
//   sequence (from_utf8_lossy). Unknown ids throw phinfer::Error.
// - encode() and decode() are const and safe to call from several threads at once.
class PHINFER_API Tokenizer {
 public:
  // Reads dir/tokenizer.json and (if present) dir/tokenizer_config.json. Throws phinfer::Error.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // The same from the files' contents (e.g. stored inside a model file). tokenizer_config_json
  // may be "" (no config). `source` names where they came from in error messages.
  static Tokenizer from_json_text(const std::string& tokenizer_json,
                                  const std::string& tokenizer_config_json,
                                  const std::string& source);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special_tokens: apply the post-processor / add_bos_token as HF tokenizer.encode does.
  // Added tokens (<|user|>, <s>, ...) in the text are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // HF tokenizer.decode(ids) with skip_special_tokens as given, no clean-up of spaces.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;                       // highest id + 1 (incl. added tokens)
  std::optional<int32_t> token_to_id(std::string_view token) const;  // vocabulary or added token
  std::string id_to_token(int32_t id) const;        // raw vocabulary string ("▁Hello", "<0x0A>")
  bool is_special(int32_t id) const;                // an added token flagged special
  // The bytes token `id` adds to decoded text, before UTF-8 validation: "<0x0A>" is "\n", "▁the"
  // " the", a byte-level token its bytes (maybe part of a character). at_start: as the first token
  // of a decode (the decoder may strip a leading space). Throws phinfer::Error for unknown ids.
  std::string token_bytes(int32_t id, bool at_start = false) const;
  std::optional<int32_t> bos_id() const;            // from tokenizer_config.json bos_token
  std::optional<int32_t> eos_id() const;            // from tokenizer_config.json eos_token
  std::string bos_token() const;                    // text, "" if none
  std::string eos_token() const;
  std::string chat_template() const;                // tokenizer_config.json chat_template, "" if none

  // Streaming detokenizer: feed ids one at a time, get the new text that is final. Never emits a
  // partial UTF-8 sequence; the leading-space rule matches decode() of the whole sequence: the
  // concatenation of all push() results and flush() equals decode(ids). O(1) work per token.
  // Text is held back only while a later token could still change it (an unfinished <0xNN> byte
  // run or UTF-8 sequence, a space the decoder may strip). The Tokenizer must outlive it.
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false);
    ~StreamDecoder();
    StreamDecoder(StreamDecoder&&) noexcept;
    StreamDecoder& operator=(StreamDecoder&&) noexcept;
    std::string push(int32_t id);   // text that became final with this id (may be ""); throws
                                    // phinfer::Error for an unknown id
    std::string flush();            // whatever remains (incomplete bytes become U+FFFD); the
                                    // decoder then starts over as for a new sequence
   private:
    const Tokenizer* tok_;
    bool skip_special_;
    std::unique_ptr<tok::DecodeStream> stream_;
  };

  struct PHINFER_HIDDEN Impl;
 private:
  PHINFER_HIDDEN explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
