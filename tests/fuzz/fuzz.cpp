#include "fuzz/fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "fuzz/targets.h"
#include "phinfer/error.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define PHINFER_FUZZ_SANITIZED 1
#include <sanitizer/common_interface_defs.h>
#endif

#ifdef PHINFER_FUZZ_SANITIZED
// Sanitizer reports end in abort(), so the SIGABRT handler below saves the input (UBSan's exit path
// does not run the death callback). The environment's ASAN_OPTIONS / UBSAN_OPTIONS still add to these.
extern "C" const char* __asan_default_options() { return "abort_on_error=1"; }
extern "C" const char* __ubsan_default_options() { return "abort_on_error=1:print_stacktrace=1"; }
#endif

namespace phinfer::fuzz {

const std::vector<Target>& targets() {
  // name, what it parses, harness, inputs of the bounded CI run.
  static const std::vector<Target> all = {
      {"safetensors", "safetensors bytes: header JSON edits, header length, offsets, dtypes, shapes", make_safetensors, 20000},
      {"config", "config.json and generation_config.json: structural and textual edits of real files", make_config, 3000},
      {"tokenizer", "tokenizer.json + tokenizer_config.json: components, vocab, merges, added tokens, regexes", make_tokenizer, 600},
      {"template", "chat templates: generated Jinja from the supported constructs, real templates mutated", make_template, 3000},
      {"native", ".phi model files from the converter, metadata and tensors mutated, CRCs fixed", make_native, 400},
      {"chatload", "ChatSession::load_json inputs (chat /load files), then rendered and continued", make_chatload, 1500},
      {"grammar", "JSON schemas and GBNF grammars mutated, compiled, walked byte by byte (never a dead end)", make_grammar, 3000},
      {"openai_request", "the server's request bodies (chat, completions, responses): fields edited, retyped, nested, bytes", make_openai_request, 5000},
      {"gguf", "GGUF files: metadata retyped / edge values / nested arrays, tensor shapes, types, offsets, byte edits; then config, tokenizer, weights, one forward pass", make_gguf, 3000},
  };
  return all;
}

const Target* find_target(std::string_view name) {
  for (const Target& t : targets())
    if (t.name == name) return &t;
  return nullptr;
}

const std::string& file(const Input& input, std::string_view name) {
  for (const File& f : input)
    if (f.name == name) return f.bytes;
  throw std::runtime_error("input has no file " + std::string(name));
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string() + " (the fuzz seeds need ../shared)");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

uint64_t fuzz_scale() {
  const char* v = std::getenv("PHINFER_FUZZ_SCALE");
  return v && std::atoi(v) > 0 ? static_cast<uint64_t>(std::atoi(v)) : 1;
}

namespace {

// The input being run, for the crash, sanitizer and hang paths that save it from a signal handler
// (so only async-signal-safe calls there: the folder name is prepared before the input runs).
const Input* g_current = nullptr;
char g_folder[4096];
// A hang is an input that uses more than its limit of CPU time (so a loaded machine does not make
// slow inputs look hung), or that blocks for 10 times the limit of wall time (e.g. in open()).
std::atomic<int64_t> g_start_cpu_ns{0};   // process CPU time when the input started
std::atomic<int64_t> g_start_wall_ns{0};  // steady clock; 0 = no input running
double g_limit_seconds = 0;

int64_t cpu_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
int64_t wall_now_ns() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

void append(char* dst, const char* src) { std::strncat(dst, src, sizeof g_folder - std::strlen(dst) - 1); }

void save_current() {
  const Input* in = g_current;
  if (!in || !g_folder[0]) return;
  ::mkdir(g_folder, 0755);
  for (const File& f : *in) {
    char path[sizeof g_folder + 256];
    path[0] = 0;
    std::strncat(path, g_folder, sizeof path - 1);
    std::strncat(path, "/", sizeof path - std::strlen(path) - 1);
    std::strncat(path, f.name.c_str(), sizeof path - std::strlen(path) - 1);
    int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) continue;
    size_t done = 0;
    while (done < f.bytes.size()) {
      ssize_t n = ::write(fd, f.bytes.data() + done, f.bytes.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  const char msg1[] = "\nphinfer_fuzz: the failing input is saved in ";
  (void)!::write(2, msg1, sizeof msg1 - 1);
  (void)!::write(2, g_folder, std::strlen(g_folder));
  (void)!::write(2, "\n", 1);
  g_current = nullptr;
}

void on_fatal_signal(int sig) {
  save_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_crash_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
#ifdef PHINFER_FUZZ_SANITIZED
  // AddressSanitizer and UBSan report, then call this before exiting.
  __sanitizer_set_death_callback([] { save_current(); });
#else
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_fatal_signal);
#endif
  std::signal(SIGABRT, on_fatal_signal);  // std::terminate, failed assertions
  // The watchdog: an input past its limit is a hang; save it and abort (a stack is useless here:
  // the input itself is the repro).
  std::thread([] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const int64_t wall0 = g_start_wall_ns.load(), cpu0 = g_start_cpu_ns.load();
      const auto limit_ns = static_cast<int64_t>(g_limit_seconds * 1e9);
      if (wall0 && (cpu_now_ns() - cpu0 > limit_ns || wall_now_ns() - wall0 > 10 * limit_ns)) {
        std::fprintf(stderr, "\nphinfer_fuzz: an input ran longer than %g s of CPU time or %g s in all (a hang)\n",
                     g_limit_seconds, 10 * g_limit_seconds);
        save_current();
        std::_Exit(70);
      }
    }
  }).detach();
}

uint64_t mix(uint64_t seed, uint64_t index) {  // splitmix64 of the pair: independent streams per input
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + index + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Stats run(const Target& target, Harness& harness, uint64_t seed, const Limits& limits,
          const std::filesystem::path& crash_dir, const Progress& progress) {
  install_crash_handlers();
  std::filesystem::create_directories(crash_dir);
  g_limit_seconds = limits.per_input_seconds;
  Stats stats;
  const auto t0 = std::chrono::steady_clock::now();
  double next_progress = 10;
  for (uint64_t i = 0; i < limits.max_inputs; ++i) {
    const auto now = std::chrono::steady_clock::now();
    stats.seconds = std::chrono::duration<double>(now - t0).count();
    if (stats.seconds >= limits.max_seconds) break;
    if (progress && stats.seconds >= next_progress) {
      progress(stats);
      next_progress += 10;
    }
    Rng rng(mix(seed, i));
    Input input;
    try {
      input = harness.generate(rng);
    } catch (const std::exception& e) {  // a bug in the harness, not in the parser
      stats.failure = Failure{i, std::string("the harness could not make the input: ") + e.what(), {}};
      break;
    }
    const auto folder = crash_dir / (target.name + "-seed" + std::to_string(seed) + "-input" + std::to_string(i));
    g_folder[0] = 0;
    append(g_folder, folder.c_str());
    g_current = &input;
    g_start_cpu_ns = cpu_now_ns();
    g_start_wall_ns = wall_now_ns();
    std::string finding;
    try {
      harness.run(input);
      ++stats.accepted;
    } catch (const Error& e) {
      ++stats.rejected;
      const size_t len = std::strlen(e.what());
      if (len > 8192) finding = "phinfer::Error with a " + std::to_string(len) + "-byte message";
    } catch (const Violation& e) {
      finding = std::string("accepted, but ") + e.what();
    } catch (const std::exception& e) {
      finding = std::string("escaped a non-phinfer exception: ") + e.what();
    } catch (...) {
      finding = "escaped an exception of unknown type";
    }
    g_start_wall_ns = 0;
    ++stats.inputs;
    if (!finding.empty()) {
      save_current();
      stats.failure = Failure{i, finding, folder};
      break;
    }
    g_current = nullptr;
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

void replay(Harness& harness, const std::filesystem::path& folder) {
  Input input;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    std::ifstream f(entry.path(), std::ios::binary);
    input.push_back({entry.path().filename().string(), std::string(std::istreambuf_iterator<char>(f), {})});
  }
  harness.run(input);
}

}  // namespace phinfer::fuzz
