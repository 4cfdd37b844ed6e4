// The scalar reference kernels: portable C++ whose every floating-point operation is spelled
// out (std::fma where the SIMD paths fuse), so the SIMD paths can be checked bit for bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace phinfer::kernels::detail {
namespace {

// Round half to even under the default rounding mode, as cvtps2dq does.
inline int32_t round_even(float v) {
#if defined(__SSE2__)
  return _mm_cvtss_si32(_mm_set_ss(v));
#else
  return static_cast<int32_t>(std::nearbyint(v));
#endif
}

void quantize_token(const float* x, const QuantLayout& L, int8_t* q, float* dx, int32_t* sums) {
  for (int64_t j = 0; j < L.n_blocks; ++j) {
    const ActBlock b = act_block(L, x, q, j);
    const float* xb = b.x;
    const int64_t len = b.len, plen = b.padded;
    int8_t* qb = b.q;
    float amax = 0.0f;
    for (int64_t c = 0; c < len; ++c) amax = std::max(amax, std::fabs(xb[c]));
    int32_t s = 0;
    if (amax >= kMinBlockAmax) {
      const float inv = 127.0f / amax;
      for (int64_t c = 0; c < len; ++c) {
        const int32_t v = std::clamp(round_even(xb[c] * inv), -127, 127);
        qb[c] = static_cast<int8_t>(v);
        s += v;
      }
      dx[j] = amax / 127.0f;
    } else {
      std::memset(qb, 0, static_cast<size_t>(len));
      dx[j] = 0.0f;
    }
    std::memset(qb + len, 0, static_cast<size_t>(plen - len));
    sums[j] = s;
  }
}

void qgemm(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  const QuantLayout& L = a.L;
  const bool q4 = L.bits == 4;
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const uint8_t* base = reinterpret_cast<const uint8_t*>(a.w) + tile * L.tile_bytes;
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(base + L.quant_bytes);
    const uint16_t* mn = reinterpret_cast<const uint16_t*>(base + L.quant_bytes + L.scale_bytes);
    const int64_t nr = std::min<int64_t>(kTileRows, L.rows - tile * kTileRows);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = tile * kTileRows + r;
      for (int64_t p = 0; p < a.A.n_panels; ++p) {
        const ActPanel P = act_panel(a.A, a.acts, p);
        for (int64_t i = 0; i < P.np; ++i) {
          float acc = 0.0f;
          for (int64_t j = 0; j < L.n_blocks; ++j) {
            int32_t I = P.corr[j * P.np + i];
            const int64_t k0 = L.block_chunk(j), nk = L.block_n_chunks(j);
            for (int64_t k = k0; k < k0 + nk; ++k) {
              const uint8_t* ch = base + k * 64 + 4 * r;
              if (q4) {
                const int8_t* xlo = P.q + ((2 * k) * P.np + i) * 4;
                const int8_t* xhi = P.q + ((2 * k + 1) * P.np + i) * 4;
                for (int b = 0; b < 4; ++b) I += (ch[b] & 15) * xlo[b] + (ch[b] >> 4) * xhi[b];
              } else {
                const int8_t* xs = P.q + (k * P.np + i) * 4;
                for (int b = 0; b < 4; ++b) I += ch[b] * xs[b];
              }
            }
            const int64_t js = j * sc_step + r;
            const float d = f16_to_f32(sc[js]);
            acc = std::fma(d * P.dx[j * P.np + i], static_cast<float>(I), acc);
            if (!L.symmetric) acc = std::fma(f16_to_f32(mn[js]), P.dxs[j * P.np + i], acc);
          }
          a.y[(p * a.A.panel + i) * a.y_stride + row] = acc;
        }
      }
    }
  }
}

float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int l = 0; l < 16; ++l) acc[l] = std::fma(a[c + l], b[c + l], acc[l]);
  for (int l = 0; c < n; ++c, ++l) acc[l] = std::fma(a[c], b[c], acc[l]);
  return reduce16(acc);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

float exp_approx(float x) {
  float v = kExpLo > x ? kExpLo : x;  // the operand order of maxps/minps: a NaN x passes through
  v = kExpHi < v ? kExpHi : v;
  const int32_t n = round_even(v * kLog2e);
  const auto nf = static_cast<float>(n);
  float r = std::fma(nf, -kExpC1, v);
  r = std::fma(nf, -kExpC2, r);
  float p = kExpP[0];
  for (int k = 1; k < 6; ++k) p = std::fma(p, r, kExpP[k]);
  const float z = r * r;
  const float y = std::fma(p, z, r) + 1.0f;
  uint32_t bits;
  std::memcpy(&bits, &y, 4);
  bits += static_cast<uint32_t>(n) << 23;
  float out;
  std::memcpy(&out, &bits, 4);
  return x > kExpHi ? std::numeric_limits<float>::infinity() : out;
}

void exp_minus(float* x, int64_t n, float shift) {
  for (int64_t i = 0; i < n; ++i) x[i] = exp_approx(x[i] - shift);
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = exp_approx(-gate[i]);
    out[i] = gate[i] / (1.0f + e) * up[i];
  }
}

void fgemm(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t row_begin,
           int64_t row_end) {
  thread_local std::vector<float> buf;  // grown once per thread: steady-state decode allocates nothing
  if (buf.size() < static_cast<size_t>(w.cols)) buf.resize(static_cast<size_t>(w.cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    w.row_to_f32(r, buf.data());
    for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride + r] = dot(buf.data(), x + t * w.cols, w.cols);
  }
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable t{Isa::Scalar, 8, false, quantize_token, qgemm, fgemm, dot, axpy, exp_minus, silu_mul};
  return t;
}

}  // namespace phinfer::kernels::detail
