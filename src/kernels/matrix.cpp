#include "kernels/matrix.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace phinfer::kernels {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kRowBlock = 16;    // weight rows converted to fp32 at once
constexpr int64_t kTokenBlock = 32;  // activations kept hot in cache while a row block is used

#define PHINFER_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))

PHINFER_MULTIVERSION
float dot_lanes(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[c + l] * b[c + l];
  for (int l = 0; c < n; ++c, ++l) acc[l] += a[c] * b[c];
  // Fixed pairwise reduction order.
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

PHINFER_MULTIVERSION
void convert_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

// y[t, r] for a block of rows already in fp32 and a block of tokens.
PHINFER_MULTIVERSION
void tile(const float* w, int64_t nr, const float* x, int64_t nt, int64_t cols, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < nt; ++t) {
    const float* xt = x + t * cols;
    for (int64_t r = 0; r < nr; ++r) {
      const float* wr = w + r * cols;
      float acc[kLanes] = {};
      int64_t c = 0;
      for (; c + kLanes <= cols; c += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += wr[c + l] * xt[c + l];
      for (int l = 0; c < cols; ++c, ++l) acc[l] += wr[c] * xt[c];
      for (int wdt = kLanes / 2; wdt > 0; wdt /= 2)
        for (int l = 0; l < wdt; ++l) acc[l] += acc[l + wdt];
      y[t * y_stride + r] = acc[0];
    }
  }
}

}  // namespace

size_t WeightMatrix::bytes() const {
  size_t elem = format == WeightFormat::F32 ? 4 : 2;
  return static_cast<size_t>(rows) * static_cast<size_t>(cols) * elem;
}

void WeightMatrix::row_span_to_f32(int64_t r, int64_t c0, int64_t n, float* out) const {
  const size_t idx = static_cast<size_t>(r) * static_cast<size_t>(cols) + static_cast<size_t>(c0);
  switch (format) {
    case WeightFormat::F32:
      std::memcpy(out, reinterpret_cast<const float*>(data) + idx, static_cast<size_t>(n) * 4);
      break;
    case WeightFormat::BF16:
      convert_bf16(reinterpret_cast<const uint16_t*>(data) + idx, out, n);
      break;
    case WeightFormat::F16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(data) + idx;
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(src[i]);
      break;
    }
  }
}

void WeightMatrix::row_to_f32(int64_t r, float* out) const { row_span_to_f32(r, 0, cols, out); }

float dot(const float* a, const float* b, int64_t n) { return dot_lanes(a, b, n); }

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool) {
  const int64_t n_row_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(n_row_blocks, [&](int64_t b0, int64_t b1) {
    std::vector<float> buf(static_cast<size_t>(kRowBlock * w.cols));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock;
      const int64_t nr = std::min(kRowBlock, w.rows - r0);
      for (int64_t r = 0; r < nr; ++r) w.row_to_f32(r0 + r, buf.data() + r * w.cols);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
        const int64_t nt = std::min(kTokenBlock, n_tokens - t0);
        tile(buf.data(), nr, x + t0 * w.cols, nt, w.cols, y + t0 * y_stride + r0, y_stride);
      }
    }
  });
}

}  // namespace phinfer::kernels
