#pragma once
// HF decoders as a streaming pipeline. Each component is a stage that receives fragments of token
// strings and passes fragments on; stages that must see more (a run of <0xNN> bytes, an incomplete
// UTF-8 sequence, white space that Strip may remove at the end of a token) hold it back until it is
// settled. decode() pushes every token and then finishes the stream, so decode() and the streaming
// detokenizer produce the same text by construction.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_view.h"

namespace phinfer::tok {

// Part of a token string. Before any fusing stage every fragment is a whole token
// (starts_token && ends_token); after Fuse / ByteLevel one token grows fragment by fragment and
// only ends when the stream finishes.
struct Fragment {
  std::string_view text;
  bool starts_token;
  bool ends_token;
};

class DecodeStream;

// Sends a fragment on to the next stage (or to the output after the last one).
class Emit {
 public:
  Emit(DecodeStream& stream, size_t next) : stream_(&stream), next_(next) {}
  void operator()(const Fragment& f) const;

 private:
  DecodeStream* stream_;
  size_t next_;
};

// One decoder component. Holds its configuration and the state of one stream; clone() gives a
// fresh stream state with the same configuration.
class DecodeStage {
 public:
  virtual ~DecodeStage() = default;
  virtual std::unique_ptr<DecodeStage> clone() const = 0;
  virtual void push(const Fragment& f, const Emit& out) = 0;
  // End of the stream: release anything held back.
  virtual void finish(const Emit& out) {}
  // What this stage makes of one token's bytes, without UTF-8 validation (a <0xNN> token is its
  // byte, a GPT-2 byte-level token its bytes). at_start: the token begins the text; fused: an
  // earlier Fuse stage made the whole text one token (so per-token rules apply only at the start).
  virtual void raw(std::string& bytes, bool at_start, bool& fused) const = 0;
};

class DecodeStream {
 public:
  explicit DecodeStream(std::vector<std::unique_ptr<DecodeStage>> stages)
      : stages_(std::move(stages)) {}
  // Appends to out the text that became final with this token.
  void push_token(std::string_view token, std::string& out);
  // Appends what was held back and resets the stream to its initial state.
  void finish(std::string& out);

 private:
  friend class Emit;
  void feed(size_t stage, const Fragment& f);
  std::vector<std::unique_ptr<DecodeStage>> stages_;
  std::string* out_ = nullptr;
};

class Decoder {
 public:
  // From the "decoder" field. JSON null gives HF's default: tokens joined with a space.
  static Decoder from_json(const JsonView& j);
  DecodeStream start() const;
  // The bytes one token adds to decoded text (see DecodeStage::raw).
  std::string token_bytes(std::string_view token, bool at_start) const;

 private:
  std::vector<std::unique_ptr<DecodeStage>> stages_;
};

}  // namespace phinfer::tok
