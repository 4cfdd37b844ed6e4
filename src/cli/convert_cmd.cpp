// phinfer convert: a Hugging Face folder -> one phinfer model file (fp32/fp16/bf16/int8/int4).
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "format/gguf.h"
#include "phinfer/convert.h"
#include "phinfer/error.h"

namespace phinfer::cli {
namespace {

struct ConvertArgs {
  std::string model, out;
  ConvertOptions options;
  std::optional<int> group_size;
  bool sym = false, asym = false;
  bool weight_format_given = false;
};

int run_convert(ConvertArgs& a) {
  // A GGUF file keeps its own precision unless a format is asked for.
  if (!a.weight_format_given && format::is_gguf_file(a.model)) a.options.weight_format = "source";
  finish_quantization_options(a.options, a.group_size, a.sym, a.asym);
  a.options.progress = print_progress;
  a.options.report = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
  const auto start = std::chrono::steady_clock::now();
  convert(a.model, a.out, a.options);
  std::printf("wrote %s in %.1f s\n", a.out.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace

Command add_convert(CLI::App& root) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* app = root.add_subcommand("convert", "Convert a Hugging Face folder or GGUF file into one phinfer model file");
  app->add_option("-m,--model", a->model, "Hugging Face checkpoint folder or GGUF file")->required();
  app->add_option("-o,--out", a->out, "Output model file")->required();
  app->add_option("--weight-format", a->options.weight_format,
                  "fp32, fp16, bf16, int8, int4, or source (as stored; the default for a GGUF file)")
      ->capture_default_str()
      ->each([a](const std::string&) { a->weight_format_given = true; });
  add_quantization_options(app, a->options, a->group_size, a->sym, a->asym);
  app->add_option("--threads", a->options.threads, "Worker threads (0 = one per physical core)");
  app->footer(
      "The flags mean what they mean in optimum-cli / NNCF: e.g. --weight-format int4 --group-size 128 --ratio 0.6 --sym\n"
      "keeps 60% of the layers' weights in int4 (the layers with the smallest int4 error) and the rest in int8.");
  return {app, [a] { return run_convert(*a); }};
}

}  // namespace phinfer::cli
