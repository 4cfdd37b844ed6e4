// Device names and the choice of backend.
#include "backend/backend.h"

#include <algorithm>
#include <thread>

#include "phinfer/error.h"
#if PHINFER_HAVE_VULKAN
#include "backend/vulkan/vulkan_backend.h"
#include "backend/vulkan/vulkan_device.h"
#endif

namespace phinfer::backend {
namespace {

// -2: not a GPU name; -1: "gpu"; N: "gpu:N". Throws on a malformed index.
int gpu_index(const std::string& device) {
  if (device == "gpu") return -1;
  if (device.rfind("gpu:", 0) != 0) return -2;
  const std::string n = device.substr(4);
  if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos)
    throw Error("device '" + device + "': expected cpu, gpu, gpu:N (N a device number) or auto");
  return std::stoi(n);
}

#if !PHINFER_HAVE_VULKAN
std::string names(const std::vector<std::string>& v) {
  std::string list;
  for (const std::string& d : v) list += (list.empty() ? "" : ", ") + d;
  return list;
}
#endif

}  // namespace

std::vector<DeviceDescription> list_devices(std::string* gpu_error) {
  std::vector<DeviceDescription> out;
  out.push_back({"cpu", "host CPU", "cpu", 0, true, std::to_string(std::thread::hardware_concurrency()) + " threads"});
#if PHINFER_HAVE_VULKAN
  try {
    for (const auto& d : vulkan::physical_devices()) {
      std::string note;
      if (!d.usable) note = "unusable: lacks " + d.missing;
      else {
        note = "Vulkan " + d.api_version;
        for (const auto& f : d.features) note += ", " + f;
      }
      out.push_back({"gpu:" + std::to_string(d.index), d.name, d.type, d.memory_bytes, d.usable, note});
    }
  } catch (const Error& e) {
    if (gpu_error) *gpu_error = e.what();
  }
#else
  if (gpu_error) *gpu_error = "this build of phinfer has no GPU backend";
#endif
  return out;
}

double measure_gpu_bandwidth_gbs(const std::string& device) {
  const int gpu = gpu_index(device);
  if (gpu == -2) return 0;
#if PHINFER_HAVE_VULKAN
  const int index = vulkan::pick_device(gpu);
  // A quarter of the device's memory, at most 1 GiB: far beyond any cache.
  uint64_t bytes = 1ull << 30;
  for (const auto& d : vulkan::physical_devices())
    if (d.index == index) bytes = std::min<uint64_t>({bytes, d.memory_bytes / 4, d.max_allocation ? d.max_allocation : bytes});
  return vulkan::measure_bandwidth(index, bytes, 5);
#else
  return 0;
#endif
}

std::vector<std::string> available_devices() {
  std::vector<std::string> out{"cpu"};
  bool any = false;
  for (const auto& d : list_devices())
    if (d.id != "cpu" && d.usable) {
      out.push_back(d.id);
      any = true;
    }
  if (any) out.insert(out.begin() + 1, "gpu");
  return out;
}

void check_device(const std::string& device) {
  if (device == "auto" || device == "cpu") return;
  const int gpu = gpu_index(device);
  if (gpu == -2) throw Error("device '" + device + "' is not a device name: expected cpu, gpu, gpu:N or auto");
#if PHINFER_HAVE_VULKAN
  vulkan::pick_device(gpu);  // throws naming the devices
#else
  throw Error("device '" + device + "' is not available: this build of phinfer has no GPU backend; it runs on " +
              names(available_devices()) + " (or auto)");
#endif
}

std::unique_ptr<Backend> create_backend(const std::string& device, std::shared_ptr<const model::Phi3Model> model,
                                        const BackendOptions& options) {
  check_device(device);
#if PHINFER_HAVE_VULKAN
  if (device == "auto") {
    // A real GPU only (lavapipe and other software devices are slower than the CPU backend), when
    // the model fits; anything else, or any failure to start it, falls back to the CPU.
    try {
      for (const auto& d : vulkan::physical_devices())
        if (d.usable && (d.type == "discrete" || d.type == "integrated") &&
            vulkan::required_bytes(*model, 512) < d.memory_bytes && options.kv_type == model::KVCacheType::F32)
          return vulkan::create_backend(d.index, model, options);
    } catch (const Error&) {
    }
    return create_cpu_backend(std::move(model), options);
  }
  if (const int gpu = gpu_index(device); gpu != -2) return vulkan::create_backend(vulkan::pick_device(gpu), std::move(model), options);
#endif
  return create_cpu_backend(std::move(model), options);
}

}  // namespace phinfer::backend
