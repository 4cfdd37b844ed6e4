#pragma once
// The device seam: everything the engine asks of the hardware, at forward-pass granularity. A
// backend owns the weights in its own layout (uploaded once), the KV caches of its sequences, and
// the buffers of a forward call; the engine owns scheduling, sampling and text. Today's CPU code is
// the "cpu" backend; a GPU backend implements the same interface.
//
// Threading: a backend is driven by one thread at a time (its engine's); caches are only touched
// through their backend.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/phi3.h"
#include "phinfer/config.h"

namespace phinfer::backend {

// The KV cache of one sequence on a device.
class SequenceCache {
 public:
  virtual ~SequenceCache() = default;
  virtual int64_t length() const = 0;                   // positions with keys and values
  virtual model::RopeTable table() const = 0;           // the table its keys were rotated with
  virtual void truncate(int64_t length) = 0;            // forgets positions >= length
  virtual void reserve(int64_t positions) = 0;          // memory for this many positions, now
  virtual int64_t capacity() const = 0;                 // positions with memory
  virtual uint64_t bytes() const = 0;                   // memory held
  // A new cache holding a copy of positions [0, length) (room for `capacity` positions).
  virtual std::unique_ptr<SequenceCache> clone(int64_t length, int64_t capacity) const = 0;
};

// One sequence's part of a forward call: tokens appended at positions cache->length(), ... with
// `table`; logits wanted for the rows listed (indices into tokens).
struct BatchEntry {
  SequenceCache* cache = nullptr;
  model::RopeTable table = model::RopeTable::Short;
  std::span<const int32_t> tokens;
  std::span<const int64_t> logit_rows;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string device() const = 0;  // "cpu", ...
  virtual const model::Phi3Model& model() const = 0;
  virtual std::unique_ptr<SequenceCache> new_cache() = 0;
  // KV bytes one position takes in this backend's caches.
  virtual uint64_t cache_bytes_per_position() const = 0;
  // The most KV cache memory this backend's device can hold (0: no limit of its own, e.g. host
  // memory); the engine's KV budget never exceeds it.
  virtual uint64_t kv_memory_limit() const { return 0; }
  // Runs every entry in one pass; returns logits [sum of logit_rows, vocab], entry by entry, valid
  // until the next call. Batch-invariant: an entry's logits do not depend on the other entries.
  // On error (phinfer::Error) no cache has changed.
  virtual std::span<const float> forward(std::span<const BatchEntry> entries) = 0;
  // A backend for another model (a speculative draft model) on the same device and threads, so
  // the two never compete for cores; it is driven by the same thread as this one, one call at a
  // time between the two.
  virtual std::unique_ptr<Backend> companion(std::shared_ptr<const model::Phi3Model> model) = 0;
};

struct BackendOptions {
  int threads = 0;      // CPU threads; 0: one per physical core
  model::KVCacheType kv_type = model::KVCacheType::F32;
};

// Devices are named "cpu", "gpu" (the best Vulkan device), "gpu:N" (Vulkan device N, in the order
// `phinfer devices` lists them) or "auto": a GPU (discrete or integrated, not a software
// rasterizer) when one is present and the model fits its memory, else the CPU.
// Throws phinfer::Error naming the device and the available ones when it cannot be used.
std::unique_ptr<Backend> create_backend(const std::string& device, std::shared_ptr<const model::Phi3Model> model,
                                        const BackendOptions& options);
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const model::Phi3Model> model, const BackendOptions& options);

// One device as `phinfer devices` lists it.
struct DeviceDescription {
  std::string id;           // "cpu", "gpu:0", ...
  std::string name;         // the driver's name of the device
  std::string type;         // cpu; for GPUs: discrete, integrated, virtual, cpu (a software implementation), other
  uint64_t memory_bytes = 0;
  bool usable = true;
  std::string note;         // features, or why it cannot be used
};
// Every device of this machine this build can see; `gpu_error` gets why no GPU is listed, if any.
std::vector<DeviceDescription> list_devices(std::string* gpu_error = nullptr);
// The devices this build can run on, e.g. {"cpu", "gpu", "gpu:0"}.
std::vector<std::string> available_devices();
// Throws phinfer::Error unless `device` names an available device (or "auto").
void check_device(const std::string& device);
// The read bandwidth of a GPU device's memory in GB/s (a probe shader reading a large buffer;
// the median of a few runs), for `phinfer bench`; 0 for the CPU (kernels/probe.h measures it).
double measure_gpu_bandwidth_gbs(const std::string& device);

}  // namespace phinfer::backend
