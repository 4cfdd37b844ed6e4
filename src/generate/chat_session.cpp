#include "phinfer/chat_session.h"

#include <algorithm>

#include "phinfer/error.h"

namespace phinfer {

ChatSession::ChatSession(const Pipeline& pipeline, std::string system_prompt, int64_t context_limit)
    : pipeline_(&pipeline), limit_(context_limit) {
  const int64_t model_max = pipeline.config().max_position_embeddings;
  if (limit_ <= 0 || limit_ > model_max) limit_ = model_max;
  set_system(system_prompt);
}

void ChatSession::set_system(const std::string& system_prompt) {
  if (!messages_.empty() && messages_.front().role == "system") messages_.erase(messages_.begin());
  if (!system_prompt.empty()) messages_.insert(messages_.begin(), ChatMessage{"system", system_prompt});
}

void ChatSession::reset() {
  std::vector<ChatMessage> kept;
  if (!messages_.empty() && messages_.front().role == "system") kept.push_back(messages_.front());
  messages_ = std::move(kept);
  state_.clear();
}

int64_t ChatSession::cached_tokens() const { return static_cast<int64_t>(state_.tokens().size()); }

std::vector<int32_t> ChatSession::fit_context(const GenerationConfig& config) {
  const int64_t reserve = std::min<int64_t>(std::max<int64_t>(config.max_new_tokens, 1), limit_ / 4);
  int dropped = 0;
  for (;;) {
    std::vector<int32_t> ids = pipeline_->encode_chat(messages_, /*add_generation_prompt=*/true);
    if (static_cast<int64_t>(ids.size()) + reserve <= limit_) {
      if (dropped > 0)
        notices_.push_back("dropped the " + std::to_string(dropped) + " oldest message" + (dropped > 1 ? "s" : "") +
                           " to fit the " + std::to_string(limit_) + "-token context");
      return ids;
    }
    // The oldest non-system message goes first; the newest user message must stay.
    const size_t first = !messages_.empty() && messages_.front().role == "system" ? 1 : 0;
    if (messages_.size() - first <= 1)
      throw Error("the message is too long: " + std::to_string(ids.size()) + " tokens plus " + std::to_string(reserve) +
                  " reserved for the answer exceed the " + std::to_string(limit_) + "-token context");
    messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(first));
    ++dropped;
    // A conversation should not start with an assistant message: drop it with its user turn.
    if (messages_.size() > first + 1 && messages_[first].role == "assistant") {
      messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(first));
      ++dropped;
    }
  }
}

GenerationResult ChatSession::send(const std::string& user_message, const GenerationConfig& config, const Streamer& streamer) {
  messages_.push_back({"user", user_message});
  std::vector<int32_t> ids;
  try {
    ids = fit_context(config);
  } catch (...) {
    messages_.pop_back();
    throw;
  }
  GenerationConfig gc = config;
  gc.return_full_text = false;
  gc.max_new_tokens = std::min<int64_t>(gc.max_new_tokens, limit_ - static_cast<int64_t>(ids.size()));
  GenerationResult r = pipeline_->generate(state_, ids, gc, streamer);
  messages_.push_back({"assistant", r.text});
  return r;
}

nlohmann::json ChatSession::to_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : messages_) {
    nlohmann::json j = m.extra.is_object() ? m.extra : nlohmann::json::object();
    j["role"] = m.role;
    j["content"] = m.content;
    out.push_back(j);
  }
  return out;
}

void ChatSession::load_json(const nlohmann::json& messages) {
  if (!messages.is_array()) throw Error("a conversation must be a JSON array of {\"role\": ..., \"content\": ...} messages");
  std::vector<ChatMessage> loaded;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string())
      throw Error("message " + std::to_string(i) + ": expected {\"role\": string, \"content\": string}");
    ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw Error("message " + std::to_string(i) + ": unknown role '" + msg.role + "'");
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.key() != "role" && it.key() != "content") msg.extra[it.key()] = it.value();
    loaded.push_back(std::move(msg));
  }
  messages_ = std::move(loaded);
  // The KV cache is kept: the next turn reuses whatever prefix the loaded conversation shares.
}

std::vector<std::string> ChatSession::take_notices() {
  std::vector<std::string> out;
  out.swap(notices_);
  return out;
}

}  // namespace phinfer
