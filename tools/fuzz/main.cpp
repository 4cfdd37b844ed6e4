// phinfer_fuzz: the fuzz harnesses of tests/fuzz/ for as long as asked (see tests/FUZZING.md).
//   phinfer_fuzz --target safetensors|config|tokenizer|template|native|chatload|grammar --seconds N [--seed S]
//   phinfer_fuzz --target T --replay FOLDER     (one saved input, e.g. after a fix)
//   phinfer_fuzz --list
// Prints the seed, input counts and rate; a failing input (crash, sanitizer report, hang, escaped
// exception, broken invariant) is saved as a folder of files under --out and the exit status is 1.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <random>

#include "fuzz/fuzz.h"
#include "phinfer/error.h"

using namespace phinfer::fuzz;

int main(int argc, char** argv) {
  CLI::App app{"phinfer_fuzz: time-bounded fuzzing of phinfer's parsers"};
  std::string target_name, replay_dir;
  double seconds = 60, per_input = 10;
  uint64_t seed = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32);
  uint64_t max_inputs = UINT64_MAX;
  std::string out = "fuzz-findings", shared = PHINFER_SHARED_DIR;
  bool list = false, known_bugs = false;
  app.add_option("--target", target_name, "what to fuzz (--list)");
  app.add_option("--seconds", seconds, "how long to run");
  app.add_option("--seed", seed, "first seed (default random; printed)");
  app.add_option("--inputs", max_inputs, "stop after this many inputs");
  app.add_option("--per-input-seconds", per_input, "an input using more CPU time (or 10 times as long in all) is a hang");
  app.add_option("--out", out, "folder for failing inputs");
  app.add_option("--shared", shared, "the shared test data folder (seeds)");
  app.add_option("--replay", replay_dir, "run one saved input folder and report its outcome");
  app.add_flag("--list", list, "list the targets");
  app.add_flag("--known-bugs", known_bugs, "also make inputs that hit the known, unfixed bugs (tests/FUZZING.md)");
  CLI11_PARSE(app, argc, argv);

  if (list || target_name.empty()) {
    for (const Target& t : targets()) std::printf("%-12s %s\n", t.name.c_str(), t.description.c_str());
    return list ? 0 : 2;
  }
  const Target* target = find_target(target_name);
  if (!target) {
    std::fprintf(stderr, "phinfer_fuzz: no target '%s' (--list)\n", target_name.c_str());
    return 2;
  }
  const auto scratch = std::filesystem::temp_directory_path() / ("phinfer_fuzz." + std::to_string(::getpid()));
  std::filesystem::create_directories(scratch);
  struct Cleanup {
    std::filesystem::path p;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } cleanup{scratch};
  const auto harness = target->make(Context{shared, scratch, known_bugs});

  if (!replay_dir.empty()) {
    try {
      replay(*harness, replay_dir);
      std::printf("accepted\n");
    } catch (const phinfer::Error& e) {
      std::printf("rejected: %s\n", e.what());
    } catch (const std::exception& e) {
      std::printf("FAILED: %s\n", e.what());
      return 1;
    }
    return 0;
  }

  std::printf("%s: seed %llu, %.0f s\n", target->name.c_str(), static_cast<unsigned long long>(seed), seconds);
  std::fflush(stdout);
  auto report = [&](const Stats& s) {
    std::printf("%s: %llu inputs (%llu accepted, %llu rejected) in %.1f s, %.0f inputs/s\n", target->name.c_str(),
                static_cast<unsigned long long>(s.inputs), static_cast<unsigned long long>(s.accepted),
                static_cast<unsigned long long>(s.rejected), s.seconds,
                s.seconds > 0 ? static_cast<double>(s.inputs) / s.seconds : 0.0);
    std::fflush(stdout);
  };
  Limits limits;
  limits.max_seconds = seconds;
  limits.max_inputs = max_inputs;
  limits.per_input_seconds = per_input;
  const Stats s = run(*target, *harness, seed, limits, out, report);
  report(s);
  if (s.failure) {
    std::printf("FAILED at input %llu: %s\n  saved in %s\n", static_cast<unsigned long long>(s.failure->index),
                s.failure->what.c_str(), s.failure->saved.c_str());
    return 1;
  }
  return 0;
}
