#pragma once
// Weight matrices as the kernels see them: [rows, cols] row-major in one storage format, read
// in place from the memory-mapped file. Quantized formats slot in as further WeightFormat values.
#include <cstddef>
#include <cstdint>
#include <span>

#include "format/dtype.h"
#include "kernels/thread_pool.h"

namespace phinfer::kernels {

enum class WeightFormat { F32, F16, BF16 };

struct WeightMatrix {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const std::byte* data = nullptr;

  size_t bytes() const;
  // Row r as fp32 (exact for every float format).
  void row_to_f32(int64_t r, float* out) const;
  // Columns [c0, c0+n) of row r as fp32.
  void row_span_to_f32(int64_t r, int64_t c0, int64_t n, float* out) const;
};

// y[t, r] = sum_c W[r, c] * x[t, c] for t in [0, n_tokens): x is [n_tokens, cols], y is
// [n_tokens, rows] with row stride y_stride (>= rows). fp32 accumulation.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool);

// Dot product with fp32 accumulation in 16 independent lanes (vectorises without reassociation,
// so the result is the same on every ISA).
float dot(const float* a, const float* b, int64_t n);
// y += a * x
void axpy(float a, const float* x, float* y, int64_t n);

}  // namespace phinfer::kernels
