// phinfer chat: an interactive conversation in the terminal (line editing, history, streaming,
// Ctrl-C stops the answer, not the program), or one message per line when stdin is not a terminal.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include <readline.h>  // libedit's readline interface (BSD licensed)

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/chat_session.h"
#include "phinfer/error.h"

namespace phinfer::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) { g_interrupted = true; }

struct ChatArgs {
  ModelArgs model;
  std::string system;
  int64_t context = 0;
  GenerationConfig gen;
  bool do_sample = false;
};

const char* kHelp =
    "Commands: /reset  /system TEXT  /stats  /save FILE  /load FILE  /exit  (end a line with \\ to continue it)\n";

// Reads one message: interactive lines go through libedit; a trailing backslash continues the message.
std::optional<std::string> read_message(bool interactive) {
  std::string message;
  for (bool first = true;; first = false) {
    std::string line;
    if (interactive) {
      g_interrupted = false;
      char* raw = readline(first ? "> " : ". ");
      if (!raw) {
        if (g_interrupted) {  // Ctrl-C at the prompt: discard the line, keep chatting
          std::printf("\n");
          message.clear();
          first = true;
          continue;
        }
        return std::nullopt;  // Ctrl-D
      }
      line = raw;
      std::free(raw);
    } else if (!std::getline(std::cin, line)) {
      if (message.empty()) return std::nullopt;
      return message;
    }
    const bool more = !line.empty() && line.back() == '\\';
    if (more) line.pop_back();
    message += line;
    if (!more) break;
    message += "\n";
  }
  if (interactive && !message.empty()) add_history(message.c_str());
  return message;
}

void print_stats(const GenerationResult& r) {
  std::fprintf(stderr, "[first token %.0f ms, %.1f tokens/s, %lld prompt tokens (%lld reused), %lld generated%s]\n",
               r.stats.ttft_ms, r.stats.decode_tokens_per_s, static_cast<long long>(r.stats.prompt_tokens),
               static_cast<long long>(r.stats.reused_prompt_tokens), static_cast<long long>(r.stats.generated_tokens),
               r.finish_reason == "stopped" ? ", interrupted" : "");
}

int run_chat(ChatArgs& a) {
  Pipeline pipe = load_pipeline(a.model);
  ChatSession chat(pipe, a.system, a.context);
  a.gen.do_sample = a.do_sample;
  const bool interactive = ::isatty(STDIN_FILENO) != 0;

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns so the prompt can be redrawn
  sigaction(SIGINT, &sa, nullptr);

  if (interactive) {
    std::fprintf(stderr, "phinfer chat: %s (context %lld tokens). %s", a.model.model.c_str(),
                 static_cast<long long>(chat.context_limit()), kHelp);
  }
  std::optional<GenerationResult> last;
  while (auto message = read_message(interactive)) {
    const std::string& m = *message;
    if (m.empty()) continue;
    if (m[0] == '/') {
      const auto space = m.find(' ');
      const std::string cmd = m.substr(0, space);
      const std::string arg = space == std::string::npos ? "" : m.substr(space + 1);
      try {
        if (cmd == "/exit" || cmd == "/quit") break;
        if (cmd == "/reset") {
          chat.reset();
          std::fprintf(stderr, "[conversation cleared]\n");
        } else if (cmd == "/system") {
          chat.set_system(arg);
          std::fprintf(stderr, "[system message %s]\n", arg.empty() ? "removed" : "set");
        } else if (cmd == "/stats") {
          std::fprintf(stderr, "[%zu messages, %lld tokens cached, context %lld]\n", chat.messages().size(),
                       static_cast<long long>(chat.cached_tokens()), static_cast<long long>(chat.context_limit()));
          if (last) print_stats(*last);
        } else if (cmd == "/save") {
          if (arg.empty()) throw Error("/save needs a file name");
          std::ofstream out(arg);
          if (!out) throw Error(arg + ": cannot write");
          out << chat.to_json().dump(2) << "\n";
          std::fprintf(stderr, "[saved %zu messages to %s]\n", chat.messages().size(), arg.c_str());
        } else if (cmd == "/load") {
          if (arg.empty()) throw Error("/load needs a file name");
          std::ifstream in(arg);
          if (!in) throw Error(arg + ": cannot open");
          nlohmann::json j;
          try {
            j = nlohmann::json::parse(in);
          } catch (const nlohmann::json::parse_error& e) {
            throw Error(arg + ": not valid JSON: " + e.what());
          }
          chat.load_json(j);
          std::fprintf(stderr, "[loaded %zu messages from %s]\n", chat.messages().size(), arg.c_str());
        } else if (cmd == "/help") {
          std::fputs(kHelp, stderr);
        } else {
          std::fprintf(stderr, "unknown command %s. %s", cmd.c_str(), kHelp);
        }
      } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
      }
      continue;
    }
    g_interrupted = false;
    try {
      GenerationResult r = chat.send(m, a.gen, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return !g_interrupted.load();
      });
      std::printf("\n");
      std::fflush(stdout);
      for (const auto& n : chat.take_notices()) std::fprintf(stderr, "[notice: %s]\n", n.c_str());
      print_stats(r);
      last = r;
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
    g_interrupted = false;
  }
  return 0;
}

}  // namespace

Command add_chat(CLI::App& root) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* app = root.add_subcommand("chat", "Talk with a model in the terminal (or one message per stdin line)");
  add_model_options(app, a->model);
  app->add_option("--system", a->system, "System message");
  app->add_option("--context", a->context, "Context limit in tokens (0 = the model's max_position_embeddings)");
  app->add_option("--max-new-tokens", a->gen.max_new_tokens, "Most tokens per answer")->capture_default_str();
  app->add_flag("--do-sample", a->do_sample, "Sample instead of greedy decoding");
  app->add_option("--temperature", a->gen.temperature, "Sampling temperature")->capture_default_str();
  app->add_option("--top-k", a->gen.top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
  app->add_option("--top-p", a->gen.top_p, "Nucleus sampling threshold")->capture_default_str();
  app->add_option("--min-p", a->gen.min_p, "Min-p threshold (0 = off)")->capture_default_str();
  app->add_option("--repetition-penalty", a->gen.repetition_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  app->add_option("--stop", a->gen.stop_strings, "Stop an answer at this string (repeatable)");
  app->add_option("--seed", a->gen.seed, "Random seed")->capture_default_str();
  return {app, [a] { return run_chat(*a); }};
}

}  // namespace phinfer::cli
