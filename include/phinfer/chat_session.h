#pragma once
// A multi-turn conversation on a Pipeline: messages are rendered with the model's chat template,
// and the KV cache is kept between turns, so a new turn only processes its new tokens.
//
// Context policy: before each answer the rendered conversation plus a reserve for the answer
// (min(max_new_tokens, context/4) tokens) must fit the context (max_position_embeddings, or the
// limit given). If it does not, the oldest turns are dropped (the system message is always kept)
// and a notice says so; if the newest user message alone does not fit, send() throws phinfer::Error.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/pipeline.h"

namespace phinfer {

class ChatSession {
 public:
  explicit ChatSession(const Pipeline& pipeline, std::string system_prompt = "", int64_t context_limit = 0);

  // Adds a user message, streams the assistant's answer and adds it (also when interrupted).
  GenerationResult send(const std::string& user_message, const GenerationConfig& config, const Streamer& streamer = {});

  void reset();                                  // forget the conversation, keep the system message
  void set_system(const std::string& system_prompt);
  const std::vector<ChatMessage>& messages() const { return messages_; }
  int64_t context_limit() const { return limit_; }
  int64_t cached_tokens() const;                  // tokens held in the KV cache

  // The conversation as JSON messages [{"role":..,"content":..}], and back (replaces the conversation).
  nlohmann::json to_json() const;
  void load_json(const nlohmann::json& messages);

  // Things the user should see (turns dropped for the context), cleared when read.
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
