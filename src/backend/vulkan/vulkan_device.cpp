#include "backend/vulkan/vulkan_device.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "phinfer/error.h"
#include "vulkan_shaders.h"

namespace phinfer::backend::vulkan {

#define PHINFER_VK_INSTANCE_FUNCTIONS(X)                                                                \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                   \
  X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties) \
  X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkCreateDevice) X(vkGetDeviceProcAddr)                 \
  X(vkEnumerateDeviceExtensionProperties)
#define PHINFER_VK_DEVICE_FUNCTIONS(X)                                                                   \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer)                           \
  X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory)            \
  X(vkMapMemory) X(vkGetBufferDeviceAddress) X(vkCreateShaderModule) X(vkDestroyShaderModule)           \
  X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreateComputePipelines) X(vkDestroyPipeline) \
  X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkBeginCommandBuffer)    \
  X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdPushConstants)              \
  X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkQueueSubmit) X(vkCreateFence)         \
  X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences)

struct Device::Api {
#define PHINFER_VK_MEMBER(name) PFN_##name name = nullptr;
  PHINFER_VK_INSTANCE_FUNCTIONS(PHINFER_VK_MEMBER)
  PHINFER_VK_DEVICE_FUNCTIONS(PHINFER_VK_MEMBER)
#undef PHINFER_VK_MEMBER
};

namespace {

std::string vk_error(VkResult r) {
  switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
    case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
    case VK_ERROR_DEVICE_LOST: return "device lost";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "no compatible Vulkan driver";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "feature not present";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "extension not present";
    case VK_ERROR_TOO_MANY_OBJECTS: return "too many objects";
    default: return "VkResult " + std::to_string(static_cast<int>(r));
  }
}

void check(VkResult r, const std::string& what) {
  if (r != VK_SUCCESS) throw Error("Vulkan: " + what + " failed: " + vk_error(r));
}

// The process's Vulkan instance: opened on first use, kept for the life of the process (drivers
// do not like being unloaded).
struct Instance {
  void* library = nullptr;
  VkInstance instance = VK_NULL_HANDLE;
  Device::Api api;
  std::string error;  // why there is none

  Instance() {
    library = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      error = "no Vulkan loader (libvulkan.so.1) on this machine: install the GPU driver's Vulkan support "
              "(Debian: libvulkan1 and mesa-vulkan-drivers)";
      return;
    }
    auto get_instance_proc = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(library, "vkGetInstanceProcAddr"));
    if (!get_instance_proc) {
      error = "libvulkan.so.1 has no vkGetInstanceProcAddr";
      return;
    }
    auto create = reinterpret_cast<PFN_vkCreateInstance>(get_instance_proc(nullptr, "vkCreateInstance"));
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "phinfer";
    app.apiVersion = VK_API_VERSION_1_2;
    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    const VkResult r = create ? create(&ci, nullptr, &instance) : VK_ERROR_INITIALIZATION_FAILED;
    if (r != VK_SUCCESS) {
      error = "no Vulkan driver could be initialized (" + vk_error(r) + ")";
      instance = VK_NULL_HANDLE;
      return;
    }
#define PHINFER_VK_LOAD(name) api.name = reinterpret_cast<PFN_##name>(get_instance_proc(instance, #name));
    PHINFER_VK_INSTANCE_FUNCTIONS(PHINFER_VK_LOAD)
#undef PHINFER_VK_LOAD
  }
  static Instance& get() {
    static Instance instance;
    return instance;
  }
  void require() const {
    if (!error.empty()) throw Error("gpu: " + error);
  }
};

std::string type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

int type_rank(const std::string& t) {
  if (t == "discrete") return 0;
  if (t == "integrated") return 1;
  if (t == "virtual") return 2;
  if (t == "cpu") return 3;
  return 4;
}

std::vector<VkPhysicalDevice> enumerate() {
  Instance& in = Instance::get();
  in.require();
  uint32_t n = 0;
  check(in.api.vkEnumeratePhysicalDevices(in.instance, &n, nullptr), "listing devices");
  std::vector<VkPhysicalDevice> devices(n);
  check(in.api.vkEnumeratePhysicalDevices(in.instance, &n, devices.data()), "listing devices");
  devices.resize(n);
  return devices;
}

bool has_extension(const Device::Api& api, VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> ext(n);
  api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, ext.data());
  for (const auto& e : ext)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

PhysicalDeviceInfo describe(int index, VkPhysicalDevice pd) {
  const Device::Api& api = Instance::get().api;
  PhysicalDeviceInfo d;
  d.index = index;
  VkPhysicalDeviceProperties p{};
  api.vkGetPhysicalDeviceProperties(pd, &p);
  // Integer dot products: core in Vulkan 1.3, else the extension; their structures are chained
  // into the queries below only where the device knows them.
  const bool knows_dot = p.apiVersion >= VK_API_VERSION_1_3 || has_extension(api, pd, "VK_KHR_shader_integer_dot_product");
  VkPhysicalDeviceShaderIntegerDotProductProperties dot_props{};
  dot_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES;
  VkPhysicalDeviceMaintenance3Properties m3{};
  m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
  if (knows_dot) m3.pNext = &dot_props;
  VkPhysicalDeviceProperties2 p2{};
  p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  p2.pNext = &m3;
  api.vkGetPhysicalDeviceProperties2(pd, &p2);
  d.name = p.deviceName;
  d.type = type_name(p.deviceType);
  d.api_version = std::to_string(VK_API_VERSION_MAJOR(p.apiVersion)) + "." + std::to_string(VK_API_VERSION_MINOR(p.apiVersion)) +
                  "." + std::to_string(VK_API_VERSION_PATCH(p.apiVersion));
  d.max_allocation = m3.maxMemoryAllocationSize;
  VkPhysicalDeviceMemoryProperties mem{};
  api.vkGetPhysicalDeviceMemoryProperties(pd, &mem);
  for (uint32_t i = 0; i < mem.memoryHeapCount; ++i)
    if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.memory_bytes = std::max<uint64_t>(d.memory_bytes, mem.memoryHeaps[i].size);

  VkPhysicalDeviceShaderIntegerDotProductFeatures dot{};
  dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
  VkPhysicalDeviceVulkan12Features f12{};
  f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  if (knows_dot) f12.pNext = &dot;
  VkPhysicalDeviceFeatures2 f{};
  f.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  f.pNext = &f12;
  std::vector<std::string> missing;
  if (p.apiVersion < VK_API_VERSION_1_2) missing.push_back("Vulkan 1.2 (the device has " + d.api_version + ")");
  else {
    api.vkGetPhysicalDeviceFeatures2(pd, &f);
    if (!f12.bufferDeviceAddress) missing.push_back("bufferDeviceAddress");
    if (!f.features.shaderInt64) missing.push_back("shaderInt64");
    if (f12.shaderFloat16) d.features.push_back("fp16 arithmetic");
    if (f12.shaderInt8) d.features.push_back("int8 arithmetic");
    d.integer_dot = dot.shaderIntegerDotProduct == VK_TRUE;
    d.integer_dot_hardware = d.integer_dot && dot_props.integerDotProduct4x8BitPackedMixedSignednessAccelerated == VK_TRUE;
  }
  if (p.limits.maxComputeWorkGroupInvocations < 256 || p.limits.maxComputeSharedMemorySize < 16384 ||
      p.limits.maxPushConstantsSize < 128)
    missing.push_back("compute limits (256 invocations, 16 KiB shared memory, 128 bytes of push constants)");
  if (d.integer_dot)
    d.features.push_back(d.integer_dot_hardware ? "int8 dot product (hardware, used)" : "int8 dot product (emulated, not used)");
  if (has_extension(api, pd, "VK_KHR_cooperative_matrix")) d.features.push_back("cooperative matrix");
  uint32_t nq = 0;
  api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
  if (std::none_of(qf.begin(), qf.end(), [](const auto& q) { return (q.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0; }))
    missing.push_back("a compute queue");
  d.usable = missing.empty();
  for (const auto& m : missing) d.missing += (d.missing.empty() ? "" : ", ") + m;
  return d;
}

}  // namespace

std::vector<PhysicalDeviceInfo> physical_devices() {
  std::vector<PhysicalDeviceInfo> out;
  const auto devices = enumerate();
  for (size_t i = 0; i < devices.size(); ++i) out.push_back(describe(static_cast<int>(i), devices[i]));
  return out;
}

int pick_device(int requested) {
  const auto devices = physical_devices();
  std::string list;
  for (const auto& d : devices)
    list += (list.empty() ? "" : "; ") + ("gpu:" + std::to_string(d.index)) + " " + d.name +
            (d.usable ? "" : " (unusable: lacks " + d.missing + ")");
  if (devices.empty()) throw Error("gpu: the Vulkan loader found no device (no GPU driver is installed or none is loaded)");
  if (requested >= 0) {
    if (requested >= static_cast<int>(devices.size()))
      throw Error("gpu:" + std::to_string(requested) + " does not exist; the Vulkan devices are: " + list);
    const auto& d = devices[static_cast<size_t>(requested)];
    if (!d.usable) throw Error("gpu:" + std::to_string(requested) + " (" + d.name + ") lacks what this backend needs: " + d.missing);
    return requested;
  }
  int best = -1;
  for (const auto& d : devices)
    if (d.usable && (best < 0 || type_rank(d.type) < type_rank(devices[static_cast<size_t>(best)].type))) best = d.index;
  if (best < 0) throw Error("gpu: no Vulkan device has what this backend needs; the devices are: " + list);
  return best;
}

// --- Device ----------------------------------------------------------------------------------

std::shared_ptr<Device> Device::open(int index) {
  static std::mutex mu;
  static std::map<int, std::weak_ptr<Device>> open_devices;
  std::lock_guard<std::mutex> lock(mu);
  if (auto d = open_devices[index].lock()) return d;
  std::shared_ptr<Device> d(new Device(index));
  open_devices[index] = d;
  return d;
}

Device::Device(int index) {
  Instance& in = Instance::get();
  in.require();
  const auto devices = enumerate();
  if (index < 0 || index >= static_cast<int>(devices.size())) throw Error("gpu:" + std::to_string(index) + " does not exist");
  physical_ = devices[static_cast<size_t>(index)];
  info_ = describe(index, physical_);
  if (!info_.usable) throw Error("gpu:" + std::to_string(index) + " (" + info_.name + ") lacks " + info_.missing);
  auto api = std::make_unique<Api>(in.api);

  uint32_t nq = 0;
  api->vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  api->vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, qf.data());
  // Prefer a compute-only family (asynchronous compute on discrete GPUs), else any with compute.
  int family = -1;
  for (uint32_t i = 0; i < nq; ++i)
    if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) family = static_cast<int>(i);
  for (uint32_t i = 0; i < nq && family < 0; ++i)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = static_cast<int>(i);
  queue_family_ = static_cast<uint32_t>(family);

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qci{};
  qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  qci.queueFamilyIndex = queue_family_;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  VkPhysicalDeviceProperties props{};
  api->vkGetPhysicalDeviceProperties(physical_, &props);

  VkPhysicalDeviceShaderIntegerDotProductFeatures dot{};
  dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
  dot.shaderIntegerDotProduct = VK_TRUE;
  VkPhysicalDeviceVulkan12Features f12{};
  f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  f12.bufferDeviceAddress = VK_TRUE;
  if (info_.integer_dot) f12.pNext = &dot;
  VkPhysicalDeviceFeatures2 f{};
  f.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  f.pNext = &f12;
  f.features.shaderInt64 = VK_TRUE;
  const char* dot_name = "VK_KHR_shader_integer_dot_product";
  VkDeviceCreateInfo dci{};
  dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  dci.pNext = &f;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  if (info_.integer_dot && props.apiVersion < VK_API_VERSION_1_3) {
    dci.enabledExtensionCount = 1;
    dci.ppEnabledExtensionNames = &dot_name;
  }
  check(api->vkCreateDevice(physical_, &dci, nullptr, &device_), "creating the device on " + info_.name);
#define PHINFER_VK_LOAD(name) api->name = reinterpret_cast<PFN_##name>(api->vkGetDeviceProcAddr(device_, #name));
  PHINFER_VK_DEVICE_FUNCTIONS(PHINFER_VK_LOAD)
#undef PHINFER_VK_LOAD
  api_ = api.release();
  api_->vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  for (int i = 0; i < 3; ++i) max_groups_[i] = props.limits.maxComputeWorkGroupCount[i];

  // Memory types: device-local for everything the shaders touch; host-visible and coherent
  // (cached when offered) for staging, inputs and read-back.
  VkPhysicalDeviceMemoryProperties mem{};
  api_->vkGetPhysicalDeviceMemoryProperties(physical_, &mem);
  int dev = -1, host = -1, host_cached = -1;
  for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
    const auto fl = mem.memoryTypes[i].propertyFlags;
    if (dev < 0 && (fl & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) dev = static_cast<int>(i);
    const auto hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if ((fl & hv) == hv) {
      if (host < 0) host = static_cast<int>(i);
      if (host_cached < 0 && (fl & VK_MEMORY_PROPERTY_HOST_CACHED_BIT)) host_cached = static_cast<int>(i);
    }
  }
  if (dev < 0 || host < 0) throw Error("gpu:" + std::to_string(index) + " (" + info_.name + ") has no device-local or no host-visible memory");
  device_type_ = static_cast<uint32_t>(dev);
  host_type_ = static_cast<uint32_t>(host_cached >= 0 ? host_cached : host);

  // One pipeline layout (128 bytes of push constants, no descriptors) for every shader.
  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
  VkPipelineLayoutCreateInfo lci{};
  lci.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  lci.pushConstantRangeCount = 1;
  lci.pPushConstantRanges = &range;
  check(api_->vkCreatePipelineLayout(device_, &lci, nullptr, &layout_), "creating the pipeline layout");
  struct Code {
    const uint32_t* words;
    size_t n;
  };
  const Code codes[] = {
      {spirv::embed, spirv::embed_words},
      {spirv::rms_norm, spirv::rms_norm_words},
      {spirv::quantize_act, spirv::quantize_act_words},
      {spirv::matmul_quant, spirv::matmul_quant_words},
      {spirv::matmul_float, spirv::matmul_float_words},
      {spirv::rope_store, spirv::rope_store_words},
      {spirv::attention, spirv::attention_words},
      {spirv::silu_mul, spirv::silu_mul_words},
      {spirv::bandwidth, spirv::bandwidth_words},
      {spirv::matmul_quant_dot, spirv::matmul_quant_dot_words},
  };
  static_assert(std::size(codes) == static_cast<size_t>(Pipeline::Count));
  for (const Code& c : codes) {
    if (&c == &codes[static_cast<size_t>(Pipeline::MatmulQuantDot)] && !info_.integer_dot) {
      pipelines_.push_back(VK_NULL_HANDLE);  // the device cannot run it
      continue;
    }
    VkShaderModuleCreateInfo sci{};
    sci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    sci.codeSize = c.n * 4;
    sci.pCode = c.words;
    VkShaderModule module = VK_NULL_HANDLE;
    check(api_->vkCreateShaderModule(device_, &sci, nullptr, &module), "creating a shader module");
    VkComputePipelineCreateInfo pci{};
    pci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    pci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pci.stage.module = module;
    pci.stage.pName = "main";
    pci.layout = layout_;
    VkPipeline pipe = VK_NULL_HANDLE;
    const VkResult r = api_->vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &pci, nullptr, &pipe);
    api_->vkDestroyShaderModule(device_, module, nullptr);
    check(r, "compiling a compute pipeline");
    pipelines_.push_back(pipe);
  }
}

Device::~Device() {
  staging_ = Buffer();
  staging_commands_.reset();
  if (!api_) return;
  for (VkPipeline p : pipelines_)
    if (p) api_->vkDestroyPipeline(device_, p, nullptr);
  if (layout_) api_->vkDestroyPipelineLayout(device_, layout_, nullptr);
  if (device_) api_->vkDestroyDevice(device_, nullptr);
  delete api_;
}

void Device::submit(VkCommandBuffer cmd, VkFence fence) {
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  std::lock_guard<std::mutex> lock(queue_mu_);  // a VkQueue is externally synchronized
  check(api_->vkQueueSubmit(queue_, 1, &si, fence), "submitting work");
}

void Device::copy_now(const Buffer& from, const Buffer& to, std::span<const VkBufferCopy> regions) {
  if (regions.empty()) return;
  std::lock_guard<std::mutex> lock(staging_mu_);
  if (!staging_commands_) staging_commands_ = std::make_unique<Commands>(*this);
  staging_commands_->begin();
  staging_commands_->copy(from, to, regions);
  staging_commands_->submit_and_wait();
}

void Device::upload(const Buffer& to, uint64_t offset, const void* data, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(staging_mu_);
  constexpr uint64_t kStaging = 64ull << 20;
  if (!staging_) staging_ = Buffer(*this, kStaging, /*host_visible=*/true, "staging buffer");
  if (!staging_commands_) staging_commands_ = std::make_unique<Commands>(*this);
  const auto* src = static_cast<const std::byte*>(data);
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(kStaging, bytes - done);
    std::memcpy(staging_.mapped(), src + done, n);
    staging_commands_->begin();
    const VkBufferCopy region{0, offset + done, n};
    staging_commands_->copy(staging_, to, {&region, 1});
    staging_commands_->submit_and_wait();
    done += n;
  }
}

// --- Buffer ----------------------------------------------------------------------------------

Buffer::Buffer(std::shared_ptr<Device> device, uint64_t bytes, bool host_visible, const std::string& what)
    : Buffer(*device, bytes, host_visible, what) {
  keep_ = std::move(device);
}

Buffer::Buffer(Device& device, uint64_t bytes, bool host_visible, const std::string& what) : device_(&device), size_(bytes) {
  const auto& api = device_->api();
  const VkDevice dev = device_->handle();
  const uint64_t limit = device_->info().max_allocation;
  if (limit && bytes > limit)
    throw Error("gpu: " + what + " needs " + std::to_string(bytes) + " bytes in one allocation; " + device_->info().name +
                " allows at most " + std::to_string(limit));
  VkBufferCreateInfo bci{};
  bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bci.size = std::max<uint64_t>(bytes, 16);
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
              VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(api.vkCreateBuffer(dev, &bci, nullptr, &buffer_), "creating " + what);
  VkMemoryRequirements req{};
  api.vkGetBufferMemoryRequirements(dev, buffer_, &req);
  const uint32_t type = device_->memory_type(host_visible);
  if (!(req.memoryTypeBits & (1u << type))) {
    release();
    throw Error("gpu: " + what + ": no suitable memory type");
  }
  VkMemoryAllocateFlagsInfo flags{};
  flags.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO;
  flags.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
  VkMemoryAllocateInfo mai{};
  mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  mai.pNext = &flags;
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = type;
  const VkResult r = api.vkAllocateMemory(dev, &mai, nullptr, &memory_);
  if (r != VK_SUCCESS) {
    const std::string message = "gpu: allocating " + std::to_string(req.size) + " bytes for " + what + " on " +
                                device_->info().name + " failed: " + vk_error(r) + " (" +
                                std::to_string(device_->allocated_bytes()) + " bytes already allocated)";
    memory_ = VK_NULL_HANDLE;
    release();
    throw Error(message);
  }
  device_->account(static_cast<int64_t>(req.size));
  check(api.vkBindBufferMemory(dev, buffer_, memory_, 0), "binding memory of " + what);
  if (host_visible) check(api.vkMapMemory(dev, memory_, 0, VK_WHOLE_SIZE, 0, &mapped_), "mapping " + what);
  VkBufferDeviceAddressInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO;
  ai.buffer = buffer_;
  address_ = api.vkGetBufferDeviceAddress(dev, &ai);
  size_ = req.size;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    keep_ = std::move(o.keep_);
    device_ = std::exchange(o.device_, nullptr);
    buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
    address_ = std::exchange(o.address_, 0);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, nullptr);
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (!device_) return;
  const auto& api = device_->api();
  if (buffer_) api.vkDestroyBuffer(device_->handle(), buffer_, nullptr);
  if (memory_) {
    api.vkFreeMemory(device_->handle(), memory_, nullptr);  // unmaps too
    device_->account(-static_cast<int64_t>(size_));
  }
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  device_ = nullptr;
  keep_.reset();
}

// --- Commands --------------------------------------------------------------------------------

Commands::Commands(std::shared_ptr<Device> device) : Commands(*device) { keep_ = std::move(device); }

Commands::Commands(Device& device) : device_(&device) {
  const auto& api = device_->api();
  VkCommandPoolCreateInfo pci{};
  pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = device_->queue_family();
  check(api.vkCreateCommandPool(device_->handle(), &pci, nullptr, &pool_), "creating a command pool");
  VkCommandBufferAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  check(api.vkAllocateCommandBuffers(device_->handle(), &ai, &cmd_), "allocating a command buffer");
  VkFenceCreateInfo fci{};
  fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  check(api.vkCreateFence(device_->handle(), &fci, nullptr, &fence_), "creating a fence");
}

Commands::~Commands() {
  const auto& api = device_->api();
  if (fence_) api.vkDestroyFence(device_->handle(), fence_, nullptr);
  if (pool_) api.vkDestroyCommandPool(device_->handle(), pool_, nullptr);
}

void Commands::begin() {
  const auto& api = device_->api();
  check(api.vkResetCommandBuffer(cmd_, 0), "resetting a command buffer");
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(api.vkBeginCommandBuffer(cmd_, &bi), "recording commands");
}

void Commands::dispatch(Pipeline pipeline, const void* constants, uint32_t bytes, uint32_t x, uint32_t y, uint32_t z) {
  const auto& api = device_->api();
  api.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, device_->pipeline(pipeline));
  api.vkCmdPushConstants(cmd_, device_->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, bytes, constants);
  api.vkCmdDispatch(cmd_, std::max(1u, x), std::max(1u, y), std::max(1u, z));
  barrier(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT);
}

// Makes the writes of the commands so far (at `stage`, of kind `access`) visible to every later
// shader and transfer.
void Commands::barrier(VkPipelineStageFlags stage, VkAccessFlags access) {
  VkMemoryBarrier b{};
  b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  b.srcAccessMask = access;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT;
  device_->api().vkCmdPipelineBarrier(cmd_, stage, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                                      1, &b, 0, nullptr, 0, nullptr);
}

void Commands::copy(const Buffer& from, const Buffer& to, std::span<const VkBufferCopy> regions) {
  const auto& api = device_->api();
  api.vkCmdCopyBuffer(cmd_, from.handle(), to.handle(), static_cast<uint32_t>(regions.size()), regions.data());
  barrier(VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
}

void Commands::submit_and_wait() {
  const auto& api = device_->api();
  check(api.vkEndCommandBuffer(cmd_), "recording commands");
  device_->submit(cmd_, fence_);
  const VkResult r = api.vkWaitForFences(device_->handle(), 1, &fence_, VK_TRUE, UINT64_MAX);
  check(r, "waiting for the GPU");
  check(api.vkResetFences(device_->handle(), 1, &fence_), "resetting a fence");
}

}  // namespace phinfer::backend::vulkan
