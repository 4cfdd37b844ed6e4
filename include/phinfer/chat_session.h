#pragma once
// A multi-turn conversation on a Pipeline: messages are rendered with the model's chat template,
// and the KV cache is kept between turns, so a new turn only processes its new tokens.
//
// KV reuse: every turn renders the whole conversation and tokenizes it (the prompt is always exactly
// Pipeline::encode_chat(messages()), as if computed from scratch); Pipeline::generate then reuses the
// cached tokens that prefix it. The earlier turns are thus never recomputed. The previous answer
// usually is: the model's own tokens and the tokenization of its text can differ (a SentencePiece
// tokenizer re-adds a leading space after a special token), so a turn computes at most the previous
// answer plus the new message, whatever the length of the conversation before them.
//
// Context policy: before each answer the rendered conversation plus a reserve for the answer
// (min(max_new_tokens, context/4), at least 1 token) must fit the context: context_limit, or the
// model's max_position_embeddings when none (or a larger one) is given. The answer itself is cut
// where the context ends (finish_reason "length").
//  - If the conversation does not fit, the oldest turns are dropped: a turn is a user message and
//    the messages after it up to the next user message, so what remains still starts with a user
//    message. The system message is always kept. Dropping invalidates the KV cache after the system
//    message, so it drops until the prompt plus reserve takes at most half the context, leaving room
//    for the next turns to reuse the cache instead of recomputing the conversation every turn.
//  - Each drop leaves a notice ("dropped the N oldest messages to fit the C-token context") for
//    take_notices(); nothing is dropped silently.
//  - If the newest user message (with the system message) does not fit by itself, send() throws
//    phinfer::Error and changes nothing: the message is not added and no turn is dropped.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/export.h"
#include "phinfer/pipeline.h"

namespace phinfer {

class PHINFER_API ChatSession {
 public:
  // context_limit <= 0: the model's max_position_embeddings.
  explicit ChatSession(const Pipeline& pipeline, std::string system_prompt = "", int64_t context_limit = 0);

  // Adds a user message, streams the assistant's answer and adds it. An answer the streamer stops
  // (finish_reason "stopped", e.g. Ctrl-C) is kept as far as it went. Throws phinfer::Error (and
  // leaves the conversation as it was) when the message cannot fit the context.
  GenerationResult send(const std::string& user_message, const GenerationConfig& config, const Streamer& streamer = {});

  void reset();                                  // forget the conversation, keep the system message
  // Sets (empty: removes) the system message. A notice says so when the chat template ignores it
  // (the Phi-3-mini-4k template drops system messages).
  void set_system(const std::string& system_prompt);
  const std::vector<ChatMessage>& messages() const { return messages_; }
  int64_t context_limit() const { return limit_; }
  int64_t cached_tokens() const;                  // tokens held in the KV cache

  // The conversation as JSON messages [{"role":..,"content":..}] (plus any extra fields a message
  // had), and back. load_json replaces the conversation, system message included, and throws
  // phinfer::Error (changing nothing) unless given an array of objects with a string "role"
  // (system, user, assistant or tool) and a string "content", nested at most 255 levels (checked
  // before anything copies it, since copies recurse). The KV cache is kept: the next turn
  // reuses whatever prefix the loaded conversation shares with it.
  nlohmann::json to_json() const;
  void load_json(const nlohmann::json& messages);

  // Things the user should see (turns dropped for the context, an ignored system message),
  // cleared when read.
  std::vector<std::string> take_notices();

 private:
  std::vector<int32_t> fit_context(const GenerationConfig& config);

  const Pipeline* pipeline_;
  std::vector<ChatMessage> messages_;
  KVState state_;
  int64_t limit_;
  std::vector<std::string> notices_;
};

}  // namespace phinfer
