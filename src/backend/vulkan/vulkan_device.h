#pragma once
// Vulkan compute, the part the backend needs and nothing more: the loader opened at run time
// (libvulkan.so.1, so the binary starts where no Vulkan is installed), the physical devices with
// the features this backend requires, one logical device per physical device shared by every
// backend on it, buffers with device addresses, the compute pipelines of the embedded shaders, and
// command submission.
//
// Threading: a Device may be used from several threads (two engines on one model); queue
// submission is serialized inside. A Buffer or Commands object is used by one thread at a time.
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace phinfer::backend::vulkan {

// What `phinfer devices` shows of a Vulkan physical device.
struct PhysicalDeviceInfo {
  int index = 0;               // N of "gpu:N" (the loader's enumeration order)
  std::string name;            // "llvmpipe (LLVM 15.0.6, 256 bits)"
  std::string type;            // discrete, integrated, virtual, cpu, other
  std::string api_version;     // "1.3.230"
  uint64_t memory_bytes = 0;   // the largest device-local heap
  uint64_t max_allocation = 0; // maxMemoryAllocationSize
  bool usable = false;         // has what this backend needs
  std::string missing;         // why not, when !usable
  std::vector<std::string> features;  // optional features present: fp16, int8 dot product, cooperative matrix, ...
  bool integer_dot = false;           // shaderIntegerDotProduct (VK_KHR_shader_integer_dot_product or Vulkan 1.3)
  bool integer_dot_hardware = false;  // and mixed-signedness 4x8-bit packed dot products in hardware
};

// Every Vulkan device of the machine; throws phinfer::Error when there is no loader or driver.
std::vector<PhysicalDeviceInfo> physical_devices();
// "gpu" (-1: the best usable device: discrete, then integrated, virtual, cpu) or "gpu:N" (N).
// Throws phinfer::Error naming the devices when it does not exist or lacks a required feature.
int pick_device(int requested);

enum class Pipeline {
  Embed, RmsNorm, QuantizeAct, MatmulQuant, MatmulFloat, RopeStore, Attention, SiluMul, Bandwidth,
  MatmulQuantDot,  // only on devices with integer dot products (Device::integer_dot())
  Count
};

class Device;

// A buffer with its own memory and device address. Host-visible buffers stay mapped.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<Device> device, uint64_t bytes, bool host_visible, const std::string& what);
  // Without keeping the device alive (the device's own buffers).
  Buffer(Device& device, uint64_t bytes, bool host_visible, const std::string& what);
  ~Buffer();
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_; }
  uint64_t address() const { return address_; }
  uint64_t size() const { return size_; }
  void* mapped() const { return mapped_; }
  explicit operator bool() const { return buffer_ != VK_NULL_HANDLE; }

 private:
  void release();
  std::shared_ptr<Device> keep_;
  Device* device_ = nullptr;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t address_ = 0, size_ = 0;
  void* mapped_ = nullptr;
};

// A command buffer recorded and submitted again and again (one forward call each time).
class Commands {
 public:
  explicit Commands(std::shared_ptr<Device> device);
  explicit Commands(Device& device);  // without keeping the device alive
  ~Commands();
  Commands(const Commands&) = delete;
  Commands& operator=(const Commands&) = delete;

  void begin();
  // Binds the pipeline, pushes `constants` and dispatches groups; then a barrier, so the next
  // command sees this one's writes.
  void dispatch(Pipeline pipeline, const void* constants, uint32_t bytes, uint32_t x, uint32_t y = 1, uint32_t z = 1);
  void copy(const Buffer& from, const Buffer& to, std::span<const VkBufferCopy> regions);
  // Ends, submits and waits for completion.
  void submit_and_wait();

 private:
  void barrier(VkPipelineStageFlags stage, VkAccessFlags access);
  std::shared_ptr<Device> keep_;
  Device* device_ = nullptr;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
};

class Device : public std::enable_shared_from_this<Device> {
 public:
  // The shared device of physical device `index` (created on first use).
  static std::shared_ptr<Device> open(int index);
  ~Device();

  const PhysicalDeviceInfo& info() const { return info_; }
  uint32_t max_groups_x() const { return max_groups_[0]; }
  uint32_t max_groups_y() const { return max_groups_[1]; }
  // Bytes of device memory this process has allocated on the device, and the heap's budget.
  uint64_t allocated_bytes() const { return allocated_; }
  // Whether the device runs the integer dot-product shader (VK_KHR_shader_integer_dot_product), and
  // whether it has hardware for it (then the backend uses it; else the portable shader is as fast).
  bool integer_dot() const { return info_.integer_dot; }
  bool integer_dot_accelerated() const { return info_.integer_dot_hardware; }

  // Copies host bytes into a device buffer at `offset` (through a host-visible staging buffer).
  void upload(const Buffer& to, uint64_t offset, const void* data, uint64_t bytes);
  // Copies regions between device buffers and waits.
  void copy_now(const Buffer& from, const Buffer& to, std::span<const VkBufferCopy> regions);

  // Internal to the backend's objects.
  struct Api;
  const Api& api() const { return *api_; }
  VkDevice handle() const { return device_; }
  VkPipeline pipeline(Pipeline p) const { return pipelines_[static_cast<size_t>(p)]; }
  VkPipelineLayout layout() const { return layout_; }
  uint32_t queue_family() const { return queue_family_; }
  void submit(VkCommandBuffer cmd, VkFence fence);
  uint32_t memory_type(bool host_visible) const { return host_visible ? host_type_ : device_type_; }
  void account(int64_t bytes) { allocated_ += static_cast<uint64_t>(bytes); }

 private:
  explicit Device(int index);
  PhysicalDeviceInfo info_;
  const Api* api_ = nullptr;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  uint32_t device_type_ = 0, host_type_ = 0;
  uint32_t max_groups_[3] = {};
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  std::vector<VkPipeline> pipelines_;
  std::mutex queue_mu_, staging_mu_;
  std::unique_ptr<Commands> staging_commands_;
  Buffer staging_;
  std::atomic<uint64_t> allocated_{0};
};

}  // namespace phinfer::backend::vulkan
