#include "format/gguf_quants.h"

#include <cstring>

#include "format/dtype.h"

namespace phinfer::format {
namespace {

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// The 32 4-bit codes of a Q4_0/Q4_1/Q5_x block: low nibbles first, then high nibbles.
inline int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }

void q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}
void q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(nibble(b + 2, j) - 8);
}
void q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(b + 4, j)) * d + m;
}
void q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  uint32_t h;
  std::memcpy(&h, b + 2, 4);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>((nibble(b + 6, j) | static_cast<int>((h >> j) & 1) << 4) - 16);
}
void q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  uint32_t h;
  std::memcpy(&h, b + 4, 4);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(b + 8, j) | ((h >> j) & 1) << 4) * d + m;
}
// Q4_K (qh == nullptr) and Q5_K.
void qk_45(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  for (int c = 0; c < 4; ++c) {
    for (int half_ = 0; half_ < 2; ++half_) {
      const int s = 2 * c + half_;
      uint8_t sc, m;
      k_scale_min(s, scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        int q = half_ ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
        if (qh && (qh[l] >> s & 1)) q += 16;
        y[64 * c + 32 * half_ + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = (ql[l] & 15) | ((qh[l] >> 0) & 3) << 4;
      const int q2 = (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4;
      const int q3 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
      const int q4 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
      y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1 - 32);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2 - 32);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3 - 32);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4 - 32);
    }
  }
}

}  // namespace

bool can_dequantize(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0:
    case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

const char* dequantizable_type_names() { return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"; }

void dequantize(GgmlType t, const std::byte* src, int64_t n, float* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(src);
  const GgmlTypeInfo& info = ggml_type_info(t);
  const int64_t blocks = n / info.block;
  auto each = [&](auto&& fn) {
    for (int64_t k = 0; k < blocks; ++k) fn(p + k * info.block_bytes, out + k * info.block);
  };
  switch (t) {
    case GgmlType::F32: std::memcpy(out, p, static_cast<size_t>(n) * 4); break;
    case GgmlType::F16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        out[k] = f16_to_f32(h);
      }
      break;
    case GgmlType::BF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        out[k] = bf16_to_f32(h);
      }
      break;
    case GgmlType::Q8_0: each(q8_0); break;
    case GgmlType::Q4_0: each(q4_0); break;
    case GgmlType::Q4_1: each(q4_1); break;
    case GgmlType::Q5_0: each(q5_0); break;
    case GgmlType::Q5_1: each(q5_1); break;
    case GgmlType::Q4_K: each([](const uint8_t* b, float* y) { qk_45(b, nullptr, b + 16, y); }); break;
    case GgmlType::Q5_K: each([](const uint8_t* b, float* y) { qk_45(b, b + 16, b + 48, y); }); break;
    case GgmlType::Q6_K: each(q6_k); break;
    default: break;  // callers check can_dequantize()
  }
}

}  // namespace phinfer::format
