// phinfer devices: the devices this build can run on (the CPU and every Vulkan device), with their
// memory and features; the names are what --device takes.
#include <cstdio>

#include "backend/backend.h"
#include "cli/commands.h"

namespace phinfer::cli {
namespace {

struct DevicesArgs {
  bool json = false;
};

int run_devices(const DevicesArgs& a) {
  std::string gpu_error;
  const auto devices = backend::list_devices(&gpu_error);
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : devices)
      out.push_back({{"id", d.id}, {"name", d.name}, {"type", d.type}, {"memory_bytes", d.memory_bytes},
                     {"usable", d.usable}, {"note", d.note}});
    nlohmann::json j{{"devices", out}};
    if (!gpu_error.empty()) j["gpu_error"] = gpu_error;
    print_json(j);
    return 0;
  }
  std::printf("%-7s %-11s %10s  %s\n", "device", "type", "memory", "name");
  for (const auto& d : devices) {
    const std::string mem = d.memory_bytes ? std::to_string(d.memory_bytes >> 20) + " MiB" : "-";
    std::printf("%-7s %-11s %10s  %s (%s)\n", d.id.c_str(), d.type.c_str(), mem.c_str(), d.name.c_str(), d.note.c_str());
  }
  if (!gpu_error.empty()) std::printf("no GPU: %s\n", gpu_error.c_str());
  else if (devices.size() > 1)
    std::printf("--device gpu picks the best usable GPU; --device auto uses a discrete or integrated GPU when the model fits, else the CPU\n");
  return 0;
}

}  // namespace

Command add_devices(CLI::App& root) {
  auto a = std::make_shared<DevicesArgs>();
  CLI::App* app = root.add_subcommand("devices", "List the devices phinfer can run on (names for --device)");
  app->add_flag("--json", a->json, "Print JSON");
  return {app, [a] { return run_devices(*a); }};
}

}  // namespace phinfer::cli
