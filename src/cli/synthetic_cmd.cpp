// phinfer make-synthetic: a random-weight checkpoint in the exact Phi-3 layout, for demos and benchmarks.
#include <cstdio>

#include "cli/commands.h"
#include "phinfer/error.h"
#include "synthetic/synthetic.h"

namespace phinfer::cli {
namespace {

struct SyntheticArgs {
  std::string preset = "tiny", out, dtype = "bf16";
  uint64_t seed = 0;
};

int run_make_synthetic(const SyntheticArgs& a) {
  synthetic::Options o;
  o.preset = a.preset;
  o.out = a.out;
  o.seed = a.seed;
  o.dtype = synthetic::parse_dtype(a.dtype);
  int last = -1;
  o.progress = [&last](double fraction) {
    int pct = static_cast<int>(fraction * 100);
    if (pct == last) return;
    last = pct;
    std::fprintf(stderr, "\rwriting %s: %3d%%", "weights", pct);
    if (pct >= 100) std::fprintf(stderr, "\n");
  };
  synthetic::write_checkpoint(o);
  std::printf("wrote %s checkpoint (%s, seed %llu) to %s\n", a.preset.c_str(), a.dtype.c_str(),
              static_cast<unsigned long long>(a.seed), a.out.c_str());
  return 0;
}

}  // namespace

Command add_make_synthetic(CLI::App& root) {
  auto a = std::make_shared<SyntheticArgs>();
  CLI::App* app = root.add_subcommand("make-synthetic", "Write a random-weight checkpoint in the Hugging Face Phi-3 layout");
  app->add_option("--preset", a->preset, "tiny (small, for demos and tests) or mini (the real Phi-3-mini shape, 3.8B)")
      ->capture_default_str();
  app->add_option("--out", a->out, "Output folder")->required();
  app->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  app->add_option("--dtype", a->dtype, "f32, f16 or bf16")->capture_default_str();
  return {app, [a] { return run_make_synthetic(*a); }};
}

}  // namespace phinfer::cli
