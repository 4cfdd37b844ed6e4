// Chat /load files (ChatSession::load_json): conversations with odd roles, contents, extra fields
// and nesting, structurally edited, plus byte edits of the JSON text, loaded into a session on a
// tiny model (phi3-tiny-mha: it has a chat template). A refused load must change nothing; an
// accepted one must save back to what reloads to the same conversation, render with the model's
// template, and now and then carry on for a turn of two tokens in a small context.
#include <fstream>

#include "fuzz/mutate.h"
#include "fuzz/targets.h"
#include "phinfer/chat_session.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"

namespace phinfer::fuzz {
namespace {

using nlohmann::json;

const std::vector<std::string> kWords = {"role", "content", "system", "user", "assistant", "tool", "tool_calls",
                                         "name", "arguments", "tools", "<|end|>", "<|user|>", "{{ x }}", ""};

class ChatLoadHarness : public Harness {
 public:
  explicit ChatLoadHarness(const Context& ctx) {
    PipelineOptions options;
    options.threads = 1;
    pipe_ = std::make_unique<Pipeline>(Pipeline::load(ctx.shared_dir / "models" / "phi3-tiny-mha", options));
  }

  Input generate(Rng& rng) override {
    json conv = json::array();
    static const char* const kRoles[] = {"system", "user", "assistant", "tool", "user", "assistant"};
    for (size_t n = pick(rng, 7); n > 0; --n) {
      std::string content;
      for (size_t k = pick(rng, 4); k > 0; --k) content += kWords[pick(rng, kWords.size())] + " ";
      if (one_in(rng, 8)) content += std::string(pick(rng, 3000), 'a');
      json m = {{"role", kRoles[pick(rng, std::size(kRoles))]}, {"content", content}};
      if (one_in(rng, 5)) m["tool_calls"] = json::array({{{"name", "f"}, {"arguments", {{"a", 1}}}}});
      conv.push_back(m);
    }
    if (!one_in(rng, 3)) mutate_json(conv, rng, kWords);
    std::string text = conv.dump(one_in(rng, 2) ? 2 : -1, ' ', false, json::error_handler_t::replace);
    if (one_in(rng, 5)) mutate_bytes(text, rng, kWords);
    static const char* const kLimits[] = {"0", "16", "64", "300"};
    return {{"conversation.json", text}, {"context_limit", kLimits[pick(rng, std::size(kLimits))]},
            {"continue", one_in(rng, 4) ? "1" : "0"}};
  }

  void run(const Input& input) override {
    json conv;
    try {
      conv = json::parse(file(input, "conversation.json"));
    } catch (const json::exception& e) {
      throw Error(std::string("conversation.json: not valid JSON: ") + e.what());  // as `chat` /load does
    }
    ChatSession chat(*pipe_, "You are a test.", std::stoll(file(input, "context_limit")));
    const json before = chat.to_json();
    try {
      chat.load_json(conv);
    } catch (const Error&) {
      require(chat.to_json() == before, "a refused load changed the conversation");
      throw;
    }
    const json saved = chat.to_json();
    ChatSession again(*pipe_);
    again.load_json(saved);
    require(again.to_json() == saved, "saving and loading again changed the conversation");
    (void)pipe_->encode_chat(chat.messages());
    if (file(input, "continue") == "1") {
      GenerationConfig gc;
      gc.max_new_tokens = 2;
      const GenerationResult r = chat.send("And then?", gc);
      require(r.output_ids.size() <= 2, "more tokens than asked for");
      (void)chat.take_notices();
    }
  }

 private:
  std::unique_ptr<Pipeline> pipe_;
};

}  // namespace

std::unique_ptr<Harness> make_chatload(const Context& ctx) { return std::make_unique<ChatLoadHarness>(ctx); }

}  // namespace phinfer::fuzz
