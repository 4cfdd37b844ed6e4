// phinfer chat: an interactive conversation in the terminal (line editing, history, streaming,
// Ctrl-C stops the answer, not the program), or one message per line when stdin is not a terminal.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>

#include <readline.h>  // libedit's readline interface (BSD licensed)

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/chat_session.h"
#include "phinfer/error.h"

namespace phinfer::cli {
namespace {

// Set by SIGINT (interactive mode only). Cleared when a prompt is shown; an answer stops when it is set.
std::atomic<bool> g_interrupted{false};

void on_sigint(int) { g_interrupted = true; }

struct ChatArgs {
  ModelArgs model;
  std::string system;
  int64_t context = 0;
  GenerationConfig gen;
  bool do_sample = false;
  GrammarArgs grammar;
};

const char* kHelp =
    "Commands: /reset  /system TEXT  /stats  /save FILE  /load FILE  /exit  (end a line with \\ to continue it;\n"
    "Ctrl-C stops an answer, Ctrl-D or /exit quits)\n";

// Reads one message: interactive lines go through libedit; a trailing backslash continues the message.
// Ctrl-C at a prompt drops what was typed (continuation lines too) and asks again.
std::optional<std::string> read_message(bool interactive) {
  std::string message;
  bool first = true;
  for (;;) {
    std::string line;
    if (interactive) {
      g_interrupted = false;
      char* raw = readline(first ? "> " : ". ");
      if (!raw) {
        if (g_interrupted) {  // Ctrl-C at the prompt: discard the message, keep chatting
          std::fputs("^C\n", stdout);
          std::fflush(stdout);
          message.clear();
          first = true;
          continue;
        }
        if (!message.empty()) return message;  // Ctrl-D after a continued line: send what there is
        std::fputs("\n", stdout);              // Ctrl-D: leave the shell prompt on a fresh line
        std::fflush(stdout);
        return std::nullopt;
      }
      line = raw;
      std::free(raw);
    } else if (!std::getline(std::cin, line)) {
      if (message.empty()) return std::nullopt;
      return message;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF input files
    const bool more = !line.empty() && line.back() == '\\';
    if (more) line.pop_back();
    message += line;
    if (!more) break;
    message += "\n";
    first = false;
  }
  if (interactive && !message.empty()) add_history(message.c_str());
  return message;
}

void print_stats(const GenerationResult& r) {
  std::string why;
  if (r.finish_reason == "stopped") why = ", interrupted";
  else if (r.finish_reason == "stop") why = ", stop string";
  else if (r.finish_reason == "length") why = ", length limit";
  std::fprintf(stderr, "[first token %.0f ms, %.1f tokens/s, %lld prompt tokens (%lld reused), %lld generated%s]\n",
               r.stats.ttft_ms, r.stats.decode_tokens_per_s, static_cast<long long>(r.stats.prompt_tokens),
               static_cast<long long>(r.stats.reused_prompt_tokens), static_cast<long long>(r.stats.generated_tokens),
               why.c_str());
}

void print_notices(ChatSession& chat) {
  for (const auto& n : chat.take_notices()) std::fprintf(stderr, "[notice: %s]\n", n.c_str());
}

constexpr size_t kMaxConversationBytes = size_t{256} << 20;

std::string errno_text() { return std::strerror(errno); }

// Reads a regular file only: a directory, FIFO or device is refused before anything reads it (a
// FIFO is opened non-blocking, so that opening it cannot wait for a writer).
std::string read_regular_file(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(max_bytes) +
                "-byte limit for a conversation file");
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(path + ": read failed: " + errno_text());
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes) throw Error(path + ": grew past the " + std::to_string(max_bytes) + "-byte limit while read");
  }
  return text;
}

// Writes a temporary file beside `path`, then renames it over `path`: a failed or interrupted
// save leaves the old file whole. Only a regular file (or nothing) at `path` is replaced, and
// its directory must exist.
void write_file_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(path + ": the folder " + dir.string() + " does not exist");
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(path + ": exists and is not a regular file; not replaced");
  const std::string temp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(temp + ": cannot create: " + errno_text());
  bool ok = true;
  for (size_t done = 0; ok && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  const std::string write_error = ok ? "" : errno_text();
  ok = ok && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = write_error.empty() ? errno_text() : write_error;
    ::unlink(temp.c_str());
    throw Error(path + ": write failed: " + why);
  }
}

// The conversation file: role and content first, then any other fields, two-space indented.
void save_conversation(const ChatSession& chat, const std::string& path) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& m : chat.messages()) {
    nlohmann::ordered_json j;
    j["role"] = m.role;
    j["content"] = m.content;
    if (m.extra.is_object())
      for (auto it = m.extra.begin(); it != m.extra.end(); ++it) j[it.key()] = it.value();
    out.push_back(std::move(j));
  }
  write_file_atomically(path, out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void load_conversation(ChatSession& chat, const std::string& path) {
  const std::string text = read_regular_file(path, kMaxConversationBytes);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);  // iterative: a deeply nested file is parsed and freed safely
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  try {
    chat.load_json(j);  // checks the nesting before it copies anything
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

int run_chat(ChatArgs& a) {
  if (a.context < 0) throw Error("--context must be >= 0 (0 = the model's context), found " + std::to_string(a.context));
  if (a.gen.max_new_tokens < 1) throw Error("--max-new-tokens must be >= 1");
  const bool interactive = ::isatty(STDIN_FILENO) != 0;
  if (interactive) std::setlocale(LC_CTYPE, "");  // libedit: UTF-8 input
  Pipeline pipe = load_pipeline(a.model);
  try {
    pipe.render_chat({{"user", "hello"}}, true);
  } catch (const Error& e) {
    throw Error("phinfer chat needs the model's chat template: " + std::string(e.what()));
  }
  ChatSession chat(pipe, a.system, a.context);
  a.gen.do_sample = a.do_sample;
  apply_grammar_options(a.grammar, a.gen);

  if (interactive) {
    // Ctrl-C stops the answer (or clears the line at a prompt) instead of ending the program.
    // SA_RESTART: a Ctrl-C during an answer must not break the write of streamed text (EINTR). At a
    // prompt, libedit's own SIGINT handler (installed while it reads, without SA_RESTART) ends its
    // read, restores this handler and raises SIGINT again: readline() returns NULL with the flag set.
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    std::fprintf(stderr, "phinfer chat: %s (context %lld tokens). %s", a.model.model.c_str(),
                 static_cast<long long>(chat.context_limit()), kHelp);
  }
  print_notices(chat);
  std::optional<GenerationResult> last;
  while (auto message = read_message(interactive)) {
    const std::string& m = *message;
    if (m.find_first_not_of(" \t\n") == std::string::npos) continue;
    if (m[0] == '/') {
      const auto space = m.find(' ');
      const std::string cmd = m.substr(0, space);
      std::string arg = space == std::string::npos ? "" : m.substr(space + 1);
      arg.erase(0, std::min(arg.size(), arg.find_first_not_of(" \t")));
      arg.erase(arg.find_last_not_of(" \t") + 1);  // npos + 1 == 0: all blank
      try {
        if (cmd == "/exit" || cmd == "/quit") break;
        if (cmd == "/reset") {
          chat.reset();
          std::fprintf(stderr, "[conversation cleared]\n");
        } else if (cmd == "/system") {
          chat.set_system(arg);
          std::fprintf(stderr, "[system message %s]\n", arg.empty() ? "removed" : "set");
          print_notices(chat);
        } else if (cmd == "/stats") {
          std::fprintf(stderr, "[%zu messages, %lld tokens cached, context %lld]\n", chat.messages().size(),
                       static_cast<long long>(chat.cached_tokens()), static_cast<long long>(chat.context_limit()));
          if (last) print_stats(*last);
        } else if (cmd == "/save") {
          if (arg.empty()) throw Error("/save needs a file name");
          save_conversation(chat, arg);
          std::fprintf(stderr, "[saved %zu messages to %s]\n", chat.messages().size(), arg.c_str());
        } else if (cmd == "/load") {
          if (arg.empty()) throw Error("/load needs a file name");
          load_conversation(chat, arg);
          std::fprintf(stderr, "[loaded %zu messages from %s]\n", chat.messages().size(), arg.c_str());
        } else if (cmd == "/help") {
          std::fputs(kHelp, stderr);
        } else {
          std::fprintf(stderr, "unknown command %s. %s", cmd.c_str(), kHelp);
        }
      } catch (const std::exception& e) {  // any failure of a command leaves the conversation as it was
        std::fprintf(stderr, "error: %s\n", e.what());
      }
      continue;
    }
    // g_interrupted is not cleared here: a Ctrl-C since the prompt stops this answer at once.
    try {
      GenerationConfig gen = a.gen;
      gen.cancel = &g_interrupted;  // Ctrl-C also stops a long prompt before its first token
      GenerationResult r = chat.send(m, gen, [&chat](std::string_view text) {
        print_notices(chat);  // turns dropped for the context: say so before the answer
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return !g_interrupted.load();
      });
      std::fputs("\n", stdout);
      std::fflush(stdout);
      print_notices(chat);
      print_stats(r);
      last = r;
    } catch (const std::exception& e) {  // the conversation survives any failure of one turn
      std::fflush(stdout);
      print_notices(chat);
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
  return 0;
}

}  // namespace

Command add_chat(CLI::App& root) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* app = root.add_subcommand("chat", "Talk with a model in the terminal (or one message per stdin line)");
  app->footer(
      "In a terminal: line editing and history; a line ending in \\ continues the message; Ctrl-C stops the\n"
      "answer (kept in the conversation) or clears the line; /reset, /system TEXT, /stats, /save FILE, /load FILE\n"
      "(the conversation as JSON messages), /exit. With stdin not a terminal, each line is one message.\n"
      "The conversation's KV cache is kept between turns. When it outgrows the context, the oldest turns are\n"
      "dropped (the system message stays) and a notice says so; a message too long by itself is refused.");
  add_model_options(app, a->model);
  app->add_option("--system", a->system, "System message");
  app->add_option("--context", a->context, "Context limit in tokens (0 = the model's max_position_embeddings)")
      ->capture_default_str();
  add_generation_options(app, a->gen, a->do_sample);
  add_speculative_options(app, a->gen.draft_tokens, a->model.pipeline.draft_model);
  add_grammar_options(app, a->grammar);
  return {app, [a] { return run_chat(*a); }};
}

}  // namespace phinfer::cli
