#include "kernels/quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "kernels/isa.h"
#include "kernels/kernels_impl.h"
#include "phinfer/error.h"

namespace phinfer::kernels {
namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct ErrAcc {
  double sq = 0, ref = 0, max_abs = 0;
  int64_t n = 0;
  void add(const ErrAcc& o) {
    sq += o.sq;
    ref += o.ref;
    max_abs = std::max(max_abs, o.max_abs);
    n += o.n;
  }
  QuantError finish() const {
    QuantError e;
    if (n > 0) {
      e.rmse = std::sqrt(sq / static_cast<double>(n));
      e.rel_rmse = ref > 0 ? std::sqrt(sq / ref) : 0.0;
    }
    e.max_abs = max_abs;
    return e;
  }
};

inline uint8_t* code_byte(std::byte* tile, const QuantLayout& L, int64_t r, int64_t c, int* shift) {
  const int64_t j = c / L.block;
  const int64_t off = c - j * L.block;
  const int64_t k = L.block_chunk(j) + off / L.chunk_cols;
  const int64_t o = off % L.chunk_cols;
  *shift = (L.bits == 4 && o >= 4) ? 4 : 0;
  return reinterpret_cast<uint8_t*>(tile) + k * 64 + 4 * r + (o & 3);
}

inline int read_code(const std::byte* tile, const QuantLayout& L, int64_t r, int64_t c) {
  int shift;
  const uint8_t b = *code_byte(const_cast<std::byte*>(tile), L, r, c, &shift);
  return L.bits == 4 ? (b >> shift) & 15 : b;
}

inline uint16_t* scale_ptr(std::byte* tile, const QuantLayout& L, bool minimum) {
  return reinterpret_cast<uint16_t*>(tile + L.quant_bytes + (minimum ? L.scale_bytes : 0));
}

}  // namespace

// The group search, for any x86-64 and for AVX2 + FMA (same bytes; quant_search.inl).
namespace search_portable {
#define PHINFER_QUANT_AVX2 0
#include "kernels/quant_search.inl"
#undef PHINFER_QUANT_AVX2
}  // namespace search_portable

PHINFER_TARGET_BEGIN("avx2,fma")
namespace search_avx2 {
#define PHINFER_QUANT_AVX2 1
#include "kernels/quant_search.inl"
#undef PHINFER_QUANT_AVX2
}  // namespace search_avx2
PHINFER_TARGET_END

namespace {
ErrAcc quantize_tiles(const float* w, const QuantLayout& L, QuantMethod method, std::byte* out, int64_t t0, int64_t t1) {
  std::vector<uint8_t> scratch(static_cast<size_t>(3 * L.cols));
  return active_isa() == Isa::Scalar ? search_portable::quantize_tiles(w, L, method, out, t0, t1, scratch.data())
                                     : search_avx2::quantize_tiles(w, L, method, out, t0, t1, scratch.data());
}
}  // namespace

QuantLayout QuantLayout::of(WeightFormat format, int64_t rows, int64_t cols, int group_size, bool symmetric) {
  if (!is_quantized(format)) throw Error("QuantLayout: not a quantized weight format");
  if (rows < 0 || cols <= 0)
    throw Error("quantized matrix: invalid shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (group_size != -1 && (group_size <= 0 || group_size > kMaxGroupSize))
    throw Error("quantized matrix: group size " + std::to_string(group_size) + " (expected -1 or 1.." +
                std::to_string(kMaxGroupSize) + ")");
  QuantLayout L;
  L.bits = format == WeightFormat::Int4 ? 4 : 8;
  L.rows = rows;
  L.cols = cols;
  L.group_size = group_size;
  L.symmetric = symmetric;
  L.block = group_size > 0 ? group_size : kPerChannelBlock;
  L.n_blocks = (cols + L.block - 1) / L.block;
  L.chunk_cols = 32 / L.bits;
  L.block_chunks = (L.block + L.chunk_cols - 1) / L.chunk_cols;
  L.n_chunks = (L.n_blocks - 1) * L.block_chunks + L.block_n_chunks(L.n_blocks - 1);
  L.padded_cols = L.n_chunks * L.chunk_cols;
  L.n_scales = group_size > 0 ? L.n_blocks : 1;
  L.quant_bytes = L.n_chunks * 64;
  L.scale_bytes = round_up(L.n_scales * kTileRows * 2, 64);
  L.tile_bytes = L.quant_bytes + L.scale_bytes * (symmetric ? 1 : 2);
  L.n_tiles = (rows + kTileRows - 1) / kTileRows;
  L.total_bytes = static_cast<size_t>(L.n_tiles * L.tile_bytes);
  L.zero_point = symmetric ? (1 << (L.bits - 1)) : 0;
  return L;
}

void pack_row(const QuantLayout& L, int64_t row, const uint8_t* codes, const uint16_t* scales, const uint16_t* minimums,
              std::byte* out) {
  std::byte* tile = out + (row / kTileRows) * L.tile_bytes;
  const int64_t r = row % kTileRows;
  for (int64_t g = 0; g < L.n_scales; ++g) {
    scale_ptr(tile, L, false)[g * kTileRows + r] = scales[g];
    if (!L.symmetric) scale_ptr(tile, L, true)[g * kTileRows + r] = minimums[g];
  }
  for (int64_t c = 0; c < L.cols; ++c) {
    int shift;
    uint8_t* b = code_byte(tile, L, r, c, &shift);
    *b = static_cast<uint8_t>(*b | (codes[c] << shift));
  }
}

size_t quantized_size(WeightFormat format, int64_t rows, int64_t cols, int group_size, bool symmetric) {
  return QuantLayout::of(format, rows, cols, group_size, symmetric).total_bytes;
}

AlignedBytes::AlignedBytes(size_t n) : size_(n) {
  if (n == 0) return;
  void* p = std::aligned_alloc(64, static_cast<size_t>(round_up(static_cast<int64_t>(n), 64)));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, n);
  ptr_.reset(static_cast<std::byte*>(p));
}

void AlignedBytes::Free::operator()(std::byte* p) const { std::free(p); }

WeightMatrix QuantizedMatrix::view() const {
  WeightMatrix m;
  m.format = format;
  m.rows = rows;
  m.cols = cols;
  m.data = data.data();
  m.group_size = group_size;
  m.symmetric = symmetric;
  return m;
}

QuantError quantize_into(const float* w, int64_t rows, int64_t cols, const QuantParams& params, std::byte* out,
                         ThreadPool* pool) {
  const QuantLayout L = QuantLayout::of(params.format, rows, cols, params.group_size, params.symmetric);
  ErrAcc total;
  if (pool == nullptr) {
    total = quantize_tiles(w, L, params.method, out, 0, L.n_tiles);
  } else {
    std::mutex mu;
    pool->parallel_for(L.n_tiles, [&](int64_t b, int64_t e) {
      ErrAcc a = quantize_tiles(w, L, params.method, out, b, e);
      std::lock_guard<std::mutex> lock(mu);
      total.add(a);
    });
  }
  return total.finish();
}

QuantizedMatrix quantize(const float* w, int64_t rows, int64_t cols, const QuantParams& params, ThreadPool* pool) {
  QuantizedMatrix q;
  q.format = params.format;
  q.rows = rows;
  q.cols = cols;
  q.group_size = params.group_size;
  q.symmetric = params.symmetric;
  q.data = AlignedBytes(quantized_size(params.format, rows, cols, params.group_size, params.symmetric));
  q.error = quantize_into(w, rows, cols, params, q.data.data(), pool);
  return q;
}

void dequantize_row(const WeightMatrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  const QuantLayout L = QuantLayout::of(w);
  const int64_t t = r / kTileRows, rr = r % kTileRows;
  const std::byte* tile = w.data + t * L.tile_bytes;
  const uint16_t* sc = scale_ptr(const_cast<std::byte*>(tile), L, false);
  const uint16_t* mn = scale_ptr(const_cast<std::byte*>(tile), L, true);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = c0 + i;
    const int64_t js = (L.n_scales > 1 ? c / L.block : 0) * kTileRows + rr;
    const float d = f16_to_f32(sc[js]);
    const float code = static_cast<float>(read_code(tile, L, rr, c));
    out[i] = L.symmetric ? d * (code - static_cast<float>(L.zero_point)) : std::fma(d, code, f16_to_f32(mn[js]));
  }
}

QuantError quantization_error(const float* w, const WeightMatrix& q) {
  ErrAcc acc;
  std::vector<float> row(static_cast<size_t>(q.cols));
  for (int64_t r = 0; r < q.rows; ++r) {
    dequantize_row(q, r, row.data());
    for (int64_t c = 0; c < q.cols; ++c) {
      const double ref = w[r * q.cols + c];
      const double e = ref - row[static_cast<size_t>(c)];
      acc.sq += e * e;
      acc.ref += ref * ref;
      acc.max_abs = std::max(acc.max_abs, std::fabs(e));
    }
    acc.n += q.cols;
  }
  return acc.finish();
}

}  // namespace phinfer::kernels
