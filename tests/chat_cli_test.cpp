// `phinfer chat` as a person uses it: in a real terminal (a tmux pane, so libedit, the tty's Ctrl-C
// and the prompt are the real ones) and with stdin piped, one message per line. Expected answers
// come from ChatSession in this process (greedy), so the CLI is checked against the library.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "phinfer/chat_session.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

using Clock = std::chrono::steady_clock;

using test::read_file;


// Runs a shell command; returns its stdout (stderr goes to err when given) and exit status.
struct Shell {
  int status = -1;
  std::string out;
};
Shell shell(const std::string& cmd) {
  Shell r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The reused prompt token counts of the speed summaries, in order.
std::vector<long> reused_counts(const std::string& text) {
  static const std::regex re(R"(prompt tokens \((\d+) reused\))");
  std::vector<long> out;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) out.push_back(std::stol((*it)[1]));
  return out;
}

const std::filesystem::path& tiny_mha() {
  static const std::filesystem::path p = test::shared_path("models/phi3-tiny-mha");
  return p;
}

const Pipeline& tiny_mha_pipeline() {
  static const Pipeline p = Pipeline::load(tiny_mha());
  return p;
}

GenerationConfig greedy(int64_t max_new_tokens) {
  GenerationConfig gc;
  gc.max_new_tokens = max_new_tokens;
  return gc;
}

// One `phinfer chat` in a detached tmux pane of 200x50 on a private tmux server (its own socket, no
// user configuration); the pane stays after the program exits, so its exit status can be read.
class Terminal {
 public:
  Terminal(const std::string& name, const std::string& chat_args) : name_(name) {
    dir_ = test::temp_dir("chat_cli_" + name + "_" + std::to_string(::getpid()));
    socket_ = "phinfer-test-" + std::to_string(::getpid()) + "-" + name;
    std::ofstream(dir_ / "tmux.conf") << "set -g remain-on-exit on\nset -g history-limit 50000\n";
    if (shell("command -v tmux >/dev/null 2>&1").status != 0) {
      ADD_FAILURE() << "tmux is not installed: the terminal tests of phinfer chat need it";
      throw std::runtime_error("no tmux");
    }
    // EDITRC=/dev/null: no user libedit configuration.
    const std::string program = "exec env EDITRC=/dev/null " + std::string(PHINFER_CLI_PATH) + " chat " + chat_args;
    const Shell r = shell(tmux("-f " + test::shell_quote((dir_ / "tmux.conf").string()) + " new-session -d -s " + name_ +
                               " -x 200 -y 50 " + test::shell_quote(program)) + " 2>&1");
    if (r.status != 0) {
      ADD_FAILURE() << "tmux new-session failed: " << r.out;
      throw std::runtime_error("tmux failed");
    }
  }
  ~Terminal() { shell(tmux("kill-server") + " >/dev/null 2>&1"); }

  const std::filesystem::path& dir() const { return dir_; }

  // Everything the pane showed (history included), wrapped lines joined, trailing blanks trimmed.
  std::string screen() const {
    std::istringstream in(shell(tmux("capture-pane -p -J -S - -t " + name_)).out);
    std::string line, out;
    while (std::getline(in, line)) {
      line.erase(line.find_last_not_of(' ') + 1);
      out += line + "\n";
    }
    out.erase(out.find_last_not_of('\n') + 1);
    return out;
  }
  void type(const std::string& text) const { shell(tmux("send-keys -t " + name_ + " -l " + test::shell_quote(text))); }
  void key(const std::string& k) const { shell(tmux("send-keys -t " + name_ + " " + k)); }
  void send(const std::string& line) const {
    type(line);
    key("Enter");
  }
  bool alive() const { return pane("#{pane_dead}") == "0"; }
  // The program has ended with status 0. tmux 3.3 sometimes marks a pane dead without recording
  // its exit status (the pty's EOF seen before the child's exit): then only a signal shows.
  bool exited_cleanly() const {
    const std::string st = pane("#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}");
    return st == "1:0:" || st == "1::";
  }
  // The last line is a fresh prompt: "> " (shown as ">" once trailing blanks are trimmed).
  bool at_prompt() const {
    const std::string s = screen();
    const size_t nl = s.rfind('\n');
    return s.substr(nl == std::string::npos ? 0 : nl + 1) == ">";
  }

  // Polls the screen every 50 ms until `done` holds; fails the test (showing the screen) after
  // `seconds` (generous: the machine may be slow and loaded).
  bool wait_for(const std::string& what, const std::function<bool(const std::string&)>& done, double seconds = 60) const {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      const std::string s = screen();
      if (done(s)) return true;
      if (Clock::now() > end) {
        ADD_FAILURE() << "timed out after " << seconds << " s waiting for " << what << "; the screen:\n" << s;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  bool wait_prompt(double seconds = 60) const {
    return wait_for("the prompt", [&](const std::string&) { return at_prompt(); }, seconds);
  }
  // Waits for the n-th speed summary (an answer finished) and the prompt after it.
  bool wait_answers(size_t n, double seconds = 60) const {
    return wait_for(std::to_string(n) + " answers and the prompt",
                    [&](const std::string& s) { return count_of(s, "[first token ") >= n && at_prompt(); }, seconds);
  }
  bool wait_exit(double seconds = 30) const {
    return wait_for("the program to exit", [&](const std::string&) { return !alive(); }, seconds);
  }
  // Sends a line and waits until `shows` appears once more on the screen.
  bool command(const std::string& line, const std::string& shows, double seconds = 60) const {
    const size_t before = count_of(screen(), shows);
    send(line);
    return wait_for("'" + shows + "' after " + line, [&](const std::string& s) { return count_of(s, shows) > before; },
                    seconds);
  }
  // /save FILE of a conversation of n messages.
  bool save(const std::filesystem::path& file, size_t n) const {
    return command("/save " + file.string(), "[saved " + std::to_string(n) + " messages to " + file.string() + "]");
  }
  // /exit (or another key, e.g. C-d): the program ends, with status 0.
  void quit(const std::string& key_name = "") const {
    if (key_name.empty()) send("/exit");
    else key(key_name);
    ASSERT_TRUE(wait_exit());
    EXPECT_TRUE(exited_cleanly());
  }

 private:
  std::string tmux(const std::string& args) const { return "tmux -L " + socket_ + " " + args; }
  std::string pane(const std::string& format) const {
    std::string out = shell(tmux("display-message -p -t " + name_ + " " + test::shell_quote(format)) + " 2>/dev/null").out;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }
  std::string name_, socket_;
  std::filesystem::path dir_;
};

std::string model_arg() { return "-m " + test::shell_quote(tiny_mha().string()); }

TEST(ChatCli, TwoTurnConversationInATerminal) {
  Terminal t("two_turns", model_arg() + " --max-new-tokens 12");
  ASSERT_TRUE(t.wait_prompt());
  EXPECT_NE(t.screen().find("phinfer chat:"), std::string::npos);
  t.send("Hello there");
  ASSERT_TRUE(t.wait_answers(1));
  t.send("And how are you today?");
  ASSERT_TRUE(t.wait_answers(2));
  const std::string s = t.screen();
  EXPECT_NE(s.find("> Hello there\n"), std::string::npos) << s;
  EXPECT_NE(s.find("> And how are you today?\n"), std::string::npos) << s;
  EXPECT_NE(s.find("tokens/s"), std::string::npos) << s;
  const auto reused = reused_counts(s);
  ASSERT_EQ(reused.size(), 2u) << s;
  EXPECT_EQ(reused[0], 0);
  EXPECT_GT(reused[1], 0) << "the second turn must reuse the first turn's KV cache\n" << s;

  // The conversation is the library's, turn for turn.
  const auto file = t.dir() / "conv.json";
  ASSERT_TRUE(t.save(file, 4));
  const auto saved = test::read_json(file);
  ChatSession expected(tiny_mha_pipeline());
  expected.send("Hello there", greedy(12));
  expected.send("And how are you today?", greedy(12));
  EXPECT_EQ(saved, expected.to_json());
  EXPECT_NE(read_file(file).find("\"role\": \"user\",\n    \"content\""), std::string::npos)
      << "role first, then content:\n" << read_file(file);

  t.quit();
}

TEST(ChatCli, CtrlCStopsTheAnswerNotTheProgram) {
  // The random-weight model loops and rarely emits eos: an answer runs until the context is full
  // (many seconds), unless interrupted.
  Terminal t("ctrl_c_answer", model_arg() + " --max-new-tokens 100000");
  ASSERT_TRUE(t.wait_prompt());
  for (size_t turn = 1; turn <= 2; ++turn) {
    const size_t before = t.screen().size();
    t.send(turn == 1 ? "Tell me a long story" : "Go on");
    // Streaming: the screen grows while the answer is produced, before it ends.
    ASSERT_TRUE(t.wait_for("the answer to stream", [&](const std::string& s) { return s.size() > before + 300; }));
    EXPECT_EQ(count_of(t.screen(), "[first token "), turn - 1) << "the answer ended before Ctrl-C";
    t.key("C-c");
    ASSERT_TRUE(t.wait_answers(turn, 30)) << "Ctrl-C must end the answer and give back the prompt";
    EXPECT_TRUE(t.alive());
    EXPECT_EQ(count_of(t.screen(), "interrupted]"), turn) << t.screen();
  }
  const auto reused = reused_counts(t.screen());
  ASSERT_EQ(reused.size(), 2u);
  EXPECT_GT(reused[1], 0);

  // The partial answers are in the conversation.
  const auto file = t.dir() / "conv.json";
  ASSERT_TRUE(t.save(file, 4));
  const auto saved = test::read_json(file);
  ASSERT_EQ(saved.size(), 4u);
  EXPECT_EQ(saved[0]["content"], "Tell me a long story");
  EXPECT_EQ(saved[2]["content"], "Go on");
  for (int i : {1, 3}) {
    EXPECT_EQ(saved[i]["role"], "assistant");
    EXPECT_GT(saved[i]["content"].get<std::string>().size(), 20u);
  }
  // The interrupted answer is what the library gives for as many tokens.
  static const std::regex generated(R"((\d+) generated, interrupted\])");
  std::smatch m;
  const std::string screen = t.screen();
  ASSERT_TRUE(std::regex_search(screen, m, generated)) << screen;
  ChatSession lib(tiny_mha_pipeline());
  EXPECT_EQ(lib.send("Tell me a long story", greedy(std::stol(m[1]))).text, saved[1]["content"].get<std::string>());

  t.quit();
}

TEST(ChatCli, CtrlCAtThePromptClearsTheLine) {
  Terminal t("ctrl_c_prompt", model_arg() + " --max-new-tokens 4");
  ASSERT_TRUE(t.wait_prompt());
  t.type("words never sent");
  ASSERT_TRUE(t.wait_for("the typed text", [](const std::string& s) { return s.find("> words never sent") != std::string::npos; }));
  t.key("C-c");
  ASSERT_TRUE(t.wait_for("a fresh prompt", [&](const std::string& s) {
    return s.find("> words never sent^C\n>") != std::string::npos && t.at_prompt();
  }));
  // A continued message is dropped whole, and the next prompt is a first-line prompt again.
  t.send("first half\\");
  ASSERT_TRUE(t.wait_for("the continuation prompt", [](const std::string& s) { return s.size() >= 2 && s.substr(s.size() - 2) == "\n."; }));
  t.type("second half");
  t.key("C-c");
  ASSERT_TRUE(t.wait_for("a fresh prompt", [&](const std::string& s) {
    return s.find(". second half^C\n>") != std::string::npos && t.at_prompt();
  }));
  EXPECT_TRUE(t.alive());
  ASSERT_TRUE(t.command("/stats", "[0 messages, 0 tokens cached"));
  // And the chat goes on.
  t.send("Hello");
  ASSERT_TRUE(t.wait_answers(1));
  t.quit("C-d");
}

TEST(ChatCli, ResetForgetsTheConversation) {
  Terminal t("reset", model_arg() + " --max-new-tokens 8");
  ASSERT_TRUE(t.wait_prompt());
  t.send("Hello there");
  ASSERT_TRUE(t.wait_answers(1));
  ASSERT_TRUE(t.command("/reset", "[conversation cleared]"));
  ASSERT_TRUE(t.command("/stats", "[0 messages, 0 tokens cached"));
  t.send("Hello there");
  ASSERT_TRUE(t.wait_answers(3));  // the first answer, /stats repeating its summary, the second answer
  const std::string s = t.screen();
  const auto reused = reused_counts(s);
  ASSERT_GE(reused.size(), 2u);
  EXPECT_EQ(reused.back(), 0) << s;
  // The same first message after /reset gets the same (greedy) answer and prompt.
  static const std::regex summary(R"(\[first token [^\]]*\])");
  std::vector<std::string> lines;
  for (std::sregex_iterator it(s.begin(), s.end(), summary), end; it != end; ++it) lines.push_back(it->str());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find(" prompt tokens (0 reused), 8 generated"), std::string::npos) << lines[0];
  const auto prompt_part = [](const std::string& l) { return l.substr(l.find("tokens/s, ") + 10); };
  EXPECT_EQ(prompt_part(lines[0]), prompt_part(lines[2])) << s;
  t.quit();
}

TEST(ChatCli, SaveThenLoadContinuesTheConversation) {
  Terminal t("save_load", model_arg() + " --max-new-tokens 10");
  ASSERT_TRUE(t.wait_prompt());
  t.send("first line\\");
  t.send("second line");  // one message of two lines
  ASSERT_TRUE(t.wait_answers(1));
  const auto a = t.dir() / "a.json", b = t.dir() / "b.json";
  ASSERT_TRUE(t.save(a, 2));
  const auto saved = test::read_json(a);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0]["role"], "user");
  EXPECT_EQ(saved[0]["content"], "first line\nsecond line");
  EXPECT_EQ(saved[1]["role"], "assistant");

  ASSERT_TRUE(t.command("/reset", "[conversation cleared]"));
  std::ofstream(t.dir() / "bad.json") << "[{\"role\": \"user\", \"content\": ";
  ASSERT_TRUE(t.command("/load " + (t.dir() / "bad.json").string(), "not valid JSON"));
  ASSERT_TRUE(t.command("/load " + (t.dir() / "missing.json").string(), "cannot open"));
  EXPECT_TRUE(t.alive());
  ASSERT_TRUE(t.command("/load " + a.string(), "[loaded 2 messages"));
  t.send("What did I say?");
  ASSERT_TRUE(t.wait_answers(2));
  ASSERT_TRUE(t.save(b, 4));
  const auto after = test::read_json(b);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0], saved[0]);
  EXPECT_EQ(after[1], saved[1]);
  // The answer after /load is the library's answer to the loaded conversation.
  ChatSession lib(tiny_mha_pipeline());
  lib.load_json(saved);
  lib.send("What did I say?", greedy(10));
  EXPECT_EQ(after, lib.to_json());
  t.quit();
}

// Piped stdin: one message per line, answers on stdout (one per line), summaries on stderr.
struct Piped {
  int status = -1;
  std::string out, err;
};
Piped run_piped(const std::string& args, const std::string& input) {
  static int counter = 0;
  const auto dir = test::temp_dir("chat_cli_piped_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::ofstream(dir / "in") << input;
  const Shell r = shell(std::string(PHINFER_CLI_PATH) + " chat " + args + " <" + test::shell_quote((dir / "in").string()) + " 2>" +
                        test::shell_quote((dir / "err").string()));
  return {r.status, r.out, read_file(dir / "err")};
}

TEST(ChatCli, PipedStdinOneMessagePerLine) {
  const Piped r = run_piped(model_arg() + " --max-new-tokens 12", "Hello there\n\nHow are you?\n/stats\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_of(r.err, "[first token "), 3u) << r.err;  // two answers and /stats
  EXPECT_NE(r.err.find("[4 messages"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("phinfer chat:"), std::string::npos) << "no banner when scripted";
  ChatSession lib(tiny_mha_pipeline());
  const std::string a1 = lib.send("Hello there", greedy(12)).text;
  const std::string a2 = lib.send("How are you?", greedy(12)).text;
  EXPECT_EQ(r.out, a1 + "\n" + a2 + "\n");
}

TEST(ChatCli, PipedContextLimitStopStringsAndErrors) {
  // A small context: turns are dropped with a notice; a message too long by itself is refused
  // with an error, and the next line is still answered.
  std::string huge;
  for (int i = 0; i < 80; ++i) huge += "word ";
  const Piped r = run_piped(model_arg() + " --context 64 --max-new-tokens 8 --system 'Be brief.'",
                            "Hello there\nTell me more about that\nAnd then?\n" + huge + "\nWhy?\nOK\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("[notice: this model's chat template ignores the system message]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[notice: dropped the "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("64-token context"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("error: the message is too long"), std::string::npos) << r.err;
  EXPECT_EQ(count_of(r.err, "[first token "), 5u) << r.err;
  for (long n : reused_counts(r.err)) EXPECT_LE(n, 64);

  // --stop: the answer ends before the first occurrence of the stop string.
  ChatSession lib(tiny_mha_pipeline());
  const std::string full = lib.send("Hello there", greedy(12)).text;
  ASSERT_GT(full.size(), 12u) << full;
  // Three ASCII characters from the middle of the answer (never part of a UTF-8 sequence).
  size_t at = full.size() / 2;
  auto ascii = [&](size_t i) { return i + 3 <= full.size() && std::all_of(full.begin() + i, full.begin() + i + 3, [](char c) { return c > 32 && c < 127; }); };
  while (at > 1 && !ascii(at)) --at;
  ASSERT_TRUE(ascii(at)) << full;
  const std::string stop = full.substr(at, 3);
  const Piped s = run_piped(model_arg() + " --max-new-tokens 12 --stop " + test::shell_quote(stop), "Hello there\n");
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_EQ(s.out, full.substr(0, full.find(stop)) + "\n");
  EXPECT_NE(s.err.find("stop string]"), std::string::npos) << s.err;

  // A model without a chat template cannot chat: say so at once.
  const Piped n = run_piped("-m " + test::shell_quote(test::shared_path("models/stories260K-phi3").string()), "Hello\n");
  EXPECT_EQ(n.status, 1);
  EXPECT_NE(n.err.find("chat template"), std::string::npos) << n.err;
}

}  // namespace
}  // namespace phinfer
