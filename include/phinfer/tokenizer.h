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

namespace phinfer {

class Tokenizer {
 public:
  // Reads dir/tokenizer.json and (if present) dir/tokenizer_config.json. Throws phinfer::Error.
  static Tokenizer from_dir(const std::filesystem::path& dir);
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
  std::optional<int32_t> bos_id() const;            // from tokenizer_config.json bos_token
  std::optional<int32_t> eos_id() const;            // from tokenizer_config.json eos_token
  std::string bos_token() const;                    // text, "" if none
  std::string eos_token() const;
  std::string chat_template() const;                // tokenizer_config.json chat_template, "" if none

  // Streaming detokenizer: feed ids one at a time, get the new text that is final. Never emits a
  // partial UTF-8 sequence; the leading-space rule matches decode() of the whole sequence.
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false);
    std::string push(int32_t id);   // text that became final with this id (may be "")
    std::string flush();            // whatever remains (incomplete bytes become U+FFFD)
   private:
    const Tokenizer* tok_;
    bool skip_special_;
    std::vector<int32_t> ids_;
    size_t emitted_ = 0;            // bytes of decode(ids_) already returned
  };

  struct Impl;
 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace phinfer
