#pragma once
// The Vulkan backend (see backend/backend.h for the interface and its threading contract).
#include <memory>
#include <string>
#include <vector>

#include "kernels/matrix.h"

#include "backend/backend.h"

namespace phinfer::backend::vulkan {

// A backend on Vulkan device `device_index` ("gpu:N"). Uploads the weights once per device and
// model (backends of one model on one device share them). Throws phinfer::Error, before uploading
// anything, when the model does not fit the device's memory (with the sizes), or for a KV cache
// type the backend does not keep.
std::unique_ptr<Backend> create_backend(int device_index, std::shared_ptr<const model::Phi3Model> model,
                                        const BackendOptions& options);

// Device memory the model needs at least: weights, and activations for a forward call of
// `rows` rows.
uint64_t required_bytes(const model::Phi3Model& model, int64_t rows);

// y = W x on the device for x [tokens, cols]: the forward pass's matrix product alone (kernel tests);
// integer_dot: Int8/Int4 with the integer dot-product shader (which the forward pass uses on devices
// with hardware for it).
std::vector<float> matmul(int device_index, const kernels::WeightMatrix& w, const float* x, int64_t tokens,
                          bool integer_dot = false);

// Reads `bytes` of device memory `reps` times with the bandwidth probe shader; returns the median
// GB/s (the decode ceiling `phinfer bench --device gpu` compares against).
double measure_bandwidth(int device_index, uint64_t bytes, int reps);

}  // namespace phinfer::backend::vulkan
