#include "phinfer/chat_session.h"

#include <algorithm>

#include "chat/json_nesting.h"
#include "phinfer/error.h"

namespace phinfer {
namespace {

// Index of the first message after the system message.
size_t first_turn(const std::vector<ChatMessage>& m) { return !m.empty() && m.front().role == "system" ? 1 : 0; }

// One past the oldest turn: the next user message after `first` (or the end).
size_t end_of_oldest_turn(const std::vector<ChatMessage>& m, size_t first) {
  size_t i = first + 1;
  while (i < m.size() && m[i].role != "user") ++i;
  return i;
}

std::string plural(size_t n, const std::string& word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

}  // namespace

ChatSession::ChatSession(const Pipeline& pipeline, std::string system_prompt, int64_t context_limit)
    : pipeline_(&pipeline), limit_(context_limit) {
  const int64_t model_max = pipeline.config().max_position_embeddings;
  if (limit_ <= 0 || limit_ > model_max) limit_ = model_max;
  set_system(system_prompt);
}

void ChatSession::set_system(const std::string& system_prompt) {
  if (!messages_.empty() && messages_.front().role == "system") messages_.erase(messages_.begin());
  if (system_prompt.empty()) return;
  messages_.insert(messages_.begin(), ChatMessage{"system", system_prompt});
  // Some templates (Phi-3-mini-4k's) leave system messages out: say so rather than pretend.
  const std::string probe = "phinfer-system-message-probe";
  bool shown = true;
  try {
    shown = pipeline_->render_chat({{"system", probe}, {"user", "hello"}}, true).find(probe) != std::string::npos;
  } catch (const std::exception&) {
    // No usable template: send() reports that.
  }
  if (!shown) notices_.push_back("this model's chat template ignores the system message");
}

void ChatSession::reset() {
  std::vector<ChatMessage> kept;
  if (!messages_.empty() && messages_.front().role == "system") kept.push_back(messages_.front());
  messages_ = std::move(kept);
  state_.clear();
}

int64_t ChatSession::cached_tokens() const { return static_cast<int64_t>(state_.tokens().size()); }

// The prompt ids for the conversation, whose last message is the new user message; drops the
// oldest turns if needed (see the policy in chat_session.h). Changes messages_ only on success.
std::vector<int32_t> ChatSession::fit_context(const GenerationConfig& config) {
  const int64_t reserve = std::max<int64_t>(1, std::min<int64_t>(config.max_new_tokens, limit_ / 4));
  auto fits = [&](const std::vector<int32_t>& ids, int64_t budget) {
    return static_cast<int64_t>(ids.size()) + reserve <= budget;
  };
  std::vector<int32_t> ids = pipeline_->encode_chat(messages_, /*add_generation_prompt=*/true);
  if (fits(ids, limit_)) return ids;

  const size_t first = first_turn(messages_);
  std::vector<ChatMessage> kept(messages_.begin(), messages_.begin() + static_cast<std::ptrdiff_t>(first));
  kept.push_back(messages_.back());
  std::vector<int32_t> alone = pipeline_->encode_chat(kept, true);
  if (!fits(alone, limit_))
    throw Error("the message is too long: " + std::to_string(alone.size()) + " tokens" +
                (first ? " with the system message" : "") + ", plus " + std::to_string(reserve) +
                " reserved for the answer, exceed the " + std::to_string(limit_) + "-token context");

  // Drop whole turns, oldest first, until the prompt takes at most half the context (so the next
  // turns reuse the cache), or only the newest message is left (that fits: checked above).
  kept = messages_;
  size_t dropped = 0;
  while (kept.size() > first + 1) {
    const size_t end = std::min(end_of_oldest_turn(kept, first), kept.size() - 1);
    dropped += end - first;
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(first), kept.begin() + static_cast<std::ptrdiff_t>(end));
    ids = pipeline_->encode_chat(kept, true);
    if (fits(ids, limit_ / 2)) break;
  }
  messages_ = std::move(kept);
  notices_.push_back("dropped the " + plural(dropped, "oldest message") + " to fit the " + std::to_string(limit_) +
                     "-token context" + (first ? " (the system message is kept)" : ""));
  return ids;
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
  GenerationResult r;
  try {
    r = pipeline_->generate(state_, ids, gc, streamer);
  } catch (...) {
    messages_.pop_back();
    throw;
  }
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
  // Before anything copies a message (copies recurse as deep as the value nests). The array is one
  // level, so a message may nest kMaxJsonNesting - 1 levels, as the chat template accepts.
  for (size_t i = 0; i < messages.size(); ++i)
    if (json_nests_deeper_than(messages[i], kMaxJsonNesting - 1))
      throw Error("message " + std::to_string(i) + ": nested more than " + std::to_string(kMaxJsonNesting - 1) +
                  " levels deep (the limit)");
  std::vector<ChatMessage> loaded;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string())
      throw Error("message " + std::to_string(i) + ": expected {\"role\": string, \"content\": string}");
    ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw Error("message " + std::to_string(i) + ": unknown role '" + msg.role + "'");
    if (msg.role == "system" && i != 0) throw Error("message " + std::to_string(i) + ": a system message must come first");
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
