#include "kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "phinfer/error.h"

namespace phinfer::kernels {
namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

float to_f16_and_back(float v) {
  v = std::clamp(v, -65504.0f, 65504.0f);
  return f16_to_f32(f32_to_f16(v));
}

// One quantization group: codes v[0, n) and the stored (fp16-representable) scale / minimum.
struct GroupFit {
  float d = 0, m = 0;
  double err = 0;
};

// Symmetric: w ~ d * (v - z), v = q + z, q in [-z, z - 1].
double sym_error(const float* w, int64_t n, float d, int z, uint8_t* v) {
  double err = 0;
  if (d == 0.0f) {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = static_cast<uint8_t>(z);
      err += static_cast<double>(w[i]) * w[i];
    }
    return err;
  }
  const float inv = 1.0f / d;
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(w[i] * inv), static_cast<float>(-z), static_cast<float>(z - 1));
    v[i] = static_cast<uint8_t>(static_cast<int>(q) + z);
    const double e = static_cast<double>(w[i]) - static_cast<double>(d * q);
    err += e * e;
  }
  return err;
}

GroupFit fit_symmetric(const float* w, int64_t n, int bits, QuantMethod method, uint8_t* v, uint8_t* tmp) {
  const int z = 1 << (bits - 1);
  const int qmax = z - 1;
  float extreme = 0;  // the element with the largest magnitude, with its sign
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(w[i]) > std::fabs(extreme)) extreme = w[i];
  GroupFit best;
  if (extreme == 0.0f) {
    best.err = sym_error(w, n, 0.0f, z, v);
    return best;
  }
  best.d = to_f16_and_back(std::fabs(extreme) / static_cast<float>(qmax));
  best.err = sym_error(w, n, best.d, z, v);
  if (method == QuantMethod::MinMax) return best;

  auto consider = [&](float d) {
    if (!(d != 0.0f) || !std::isfinite(d)) return;
    sym_error(w, n, d, z, tmp);
    // Least-squares scale for these codes, then re-round with it.
    double swq = 0, sqq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double q = static_cast<double>(tmp[i]) - z;
      swq += static_cast<double>(w[i]) * q;
      sqq += q * q;
    }
    if (sqq <= 0) return;
    const float d2 = to_f16_and_back(static_cast<float>(swq / sqq));
    if (d2 == 0.0f) return;
    const double err = sym_error(w, n, d2, z, tmp);
    if (err < best.err) {
      best.err = err;
      best.d = d2;
      std::memcpy(v, tmp, static_cast<size_t>(n));
    }
  };
  // The extreme element maps to about -z (or +qmax) times f: f > 1 clips the tails, which pays
  // off for long groups (a Gaussian row of 3072 is best cut near 0.7 of its maximum at 4 bits).
  constexpr int kSteps = 20;
  for (int s = 0; s <= kSteps; ++s) {
    const float f = 0.80f + 0.80f * static_cast<float>(s) / kSteps;  // 0.80 .. 1.60
    consider(extreme / (-static_cast<float>(z) * f));
    consider(extreme / (static_cast<float>(qmax) * f));
  }
  // A second least-squares pass from the best codes.
  if (best.d != 0.0f) consider(best.d);
  return best;
}

// Asymmetric: w ~ d * v + m, v in [0, vmax].
double asym_error(const float* w, int64_t n, float d, float m, int vmax, uint8_t* v) {
  double err = 0;
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float q = d != 0.0f ? std::clamp(std::nearbyint((w[i] - m) * inv), 0.0f, static_cast<float>(vmax)) : 0.0f;
    v[i] = static_cast<uint8_t>(q);
    const double e = static_cast<double>(w[i]) - static_cast<double>(std::fma(d, q, m));
    err += e * e;
  }
  return err;
}

GroupFit fit_asymmetric(const float* w, int64_t n, int bits, QuantMethod method, uint8_t* v, uint8_t* tmp) {
  const int vmax = (1 << bits) - 1;
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  GroupFit best;
  best.m = to_f16_and_back(lo);
  best.d = to_f16_and_back((hi - best.m) / static_cast<float>(vmax));
  best.err = asym_error(w, n, best.d, best.m, vmax, v);
  if (method == QuantMethod::MinMax || hi == lo) return best;

  auto refit = [&](const uint8_t* codes) -> bool {
    double sv = 0, svv = 0, sw = 0, swv = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double q = codes[i];
      sv += q;
      svv += q * q;
      sw += w[i];
      swv += static_cast<double>(w[i]) * q;
    }
    const double nn = static_cast<double>(n);
    const double det = nn * svv - sv * sv;
    if (det <= 0) return false;
    const float d = to_f16_and_back(static_cast<float>((nn * swv - sv * sw) / det));
    const float m = to_f16_and_back(static_cast<float>((svv * sw - sv * swv) / det));
    if (!(d > 0.0f)) return false;
    const double err = asym_error(w, n, d, m, vmax, tmp);
    if (err < best.err) {
      best = {d, m, err};
      std::memcpy(v, tmp, static_cast<size_t>(n));
    }
    return true;
  };
  constexpr int kSteps = 20;
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int s = 0; s <= kSteps; ++s) {
    const float f = 0.85f + 0.75f * static_cast<float>(s) / kSteps;  // 0.85 .. 1.60
    // Range shrunk by f around the middle, so both tails may clip.
    const float iscale = static_cast<float>(vmax) * f / (hi - lo);
    const float base = 0.5f * (hi + lo) - 0.5f * static_cast<float>(vmax) / iscale;
    for (int64_t i = 0; i < n; ++i)
      codes[static_cast<size_t>(i)] =
          static_cast<uint8_t>(std::clamp(std::nearbyint((w[i] - base) * iscale), 0.0f, static_cast<float>(vmax)));
    refit(codes.data());
  }
  // One more least-squares pass on the best codes found.
  std::memcpy(codes.data(), v, static_cast<size_t>(n));
  refit(codes.data());
  return best;
}

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

// Quantizes rows [16 t0, 16 t1) into their tiles; returns the error terms.
ErrAcc quantize_tiles(const float* w, const QuantLayout& L, QuantMethod method, std::byte* out, int64_t t0,
                      int64_t t1) {
  ErrAcc acc;
  const int64_t qlen = L.group_size > 0 ? L.group_size : L.cols;
  std::vector<uint8_t> v(static_cast<size_t>(L.cols)), tmp(static_cast<size_t>(qlen));
  for (int64_t t = t0; t < t1; ++t) {
    std::byte* tile = out + t * L.tile_bytes;
    std::memset(tile, 0, static_cast<size_t>(L.tile_bytes));
    uint16_t* sc = scale_ptr(tile, L, false);
    uint16_t* mn = scale_ptr(tile, L, true);
    for (int64_t r = 0; r < kTileRows; ++r) {
      const int64_t row = t * kTileRows + r;
      if (row >= L.rows) break;
      const float* wr = w + row * L.cols;
      for (int64_t g = 0, g0 = 0; g0 < L.cols; ++g, g0 += qlen) {
        const int64_t n = std::min(qlen, L.cols - g0);
        const GroupFit f = L.symmetric ? fit_symmetric(wr + g0, n, L.bits, method, v.data() + g0, tmp.data())
                                       : fit_asymmetric(wr + g0, n, L.bits, method, v.data() + g0, tmp.data());
        sc[g * kTileRows + r] = f32_to_f16(f.d);
        if (!L.symmetric) mn[g * kTileRows + r] = f32_to_f16(f.m);
        for (int64_t i = 0; i < n; ++i) {
          const float code = static_cast<float>(v[static_cast<size_t>(g0 + i)]);
          const float rec = L.symmetric ? f.d * (code - static_cast<float>(L.zero_point)) : std::fma(f.d, code, f.m);
          const double e = static_cast<double>(wr[g0 + i]) - rec;
          acc.sq += e * e;
          acc.ref += static_cast<double>(wr[g0 + i]) * wr[g0 + i];
          acc.max_abs = std::max(acc.max_abs, std::fabs(e));
        }
      }
      acc.n += L.cols;
      for (int64_t c = 0; c < L.cols; ++c) {
        int shift;
        uint8_t* b = code_byte(tile, L, r, c, &shift);
        *b = static_cast<uint8_t>(*b | (v[static_cast<size_t>(c)] << shift));
      }
    }
  }
  return acc;
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
