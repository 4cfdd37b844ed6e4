// phinfer verify: a full integrity check of a phinfer model file (metadata and every tensor CRC32).
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "format/file_io.h"
#include "format/native_file.h"
#include "phinfer/error.h"

namespace phinfer::cli {
namespace {

struct VerifyArgs {
  std::string model;
};

int run_verify(const VerifyArgs& a) {
  // A file that cannot be opened at all is an error, not a verdict about its contents.
  (void)format::open_regular_file(a.model);
  const auto start = std::chrono::steady_clock::now();
  try {
    const auto file = format::NativeFile::open(a.model);  // header and metadata CRC32
    file.verify();                                        // every tensor's CRC32, in file order
    std::printf("%s: OK: metadata and %zu tensors (%llu bytes) match their CRC32 checksums (%.1f s)\n", a.model.c_str(),
                file.tensors().size(), static_cast<unsigned long long>(file.tensor_bytes()),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return 0;
  } catch (const Error& e) {
    std::printf("%s: CORRUPT: %s\n", a.model.c_str(), e.what());
    return 1;
  }
}

}  // namespace

Command add_verify(CLI::App& root) {
  auto a = std::make_shared<VerifyArgs>();
  CLI::App* app = root.add_subcommand("verify", "Check a phinfer model file's metadata and tensor checksums (exit 0 ok, 1 corrupt)");
  app->add_option("-m,--model", a->model, "phinfer model file (.phi)")->required();
  return {app, [a] { return run_verify(*a); }};
}

}  // namespace phinfer::cli
