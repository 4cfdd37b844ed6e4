// phinfer: the command-line front end. Each subcommand is a thin layer over the library.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "phinfer/error.h"

int main(int argc, char** argv) {
  CLI::App app{"phinfer: exact, fast Phi-3 family inference on your own machine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("phinfer 0.1.0"));
  using namespace phinfer::cli;
  std::vector<Command> commands = {add_generate(app), add_chat(app), add_tokenize(app), add_detokenize(app), add_logits(app),
                                   add_make_synthetic(app), add_convert(app), add_verify(app),
                                   add_perplexity(app), add_compare(app), add_bench(app), add_bench_grammar(app), add_serve(app),
                                   add_devices(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
