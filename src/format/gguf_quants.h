#pragma once
// Dequantization of the ggml tensor types a GGUF file of a Phi model holds, written from ggml's
// block layouts (below) and checked bit-exactly against ggml's own results (tests/gguf_quants_test).
//
// ---------------------------------------------------------------------------------------------
// Block layouts (little endian; d, m, dmin are IEEE fp16; a row of ne0 values is ne0 / QK blocks)
// ---------------------------------------------------------------------------------------------
//   F32 / F16 / BF16  one value per element (BF16 = the upper 16 bits of a float32)
//   Q8_0  QK 32, 34 bytes: d, int8 qs[32]                       y[j] = d * qs[j]
//   Q4_0  QK 32, 18 bytes: d, u8 qs[16]                         q[j] = qs[j] & 15 (j < 16),
//                                                               qs[j-16] >> 4 (j >= 16); y = d * (q - 8)
//   Q4_1  QK 32, 20 bytes: d, m, u8 qs[16]                      q as Q4_0; y = q * d + m
//   Q5_0  QK 32, 22 bytes: d, u8 qh[4], u8 qs[16]               h = u32 of qh; q = q4 | ((h >> j) & 1) << 4;
//                                                               y = d * (q - 16)
//   Q5_1  QK 32, 24 bytes: d, m, u8 qh[4], u8 qs[16]            q as Q5_0; y = q * d + m
//   Q4_K  QK 256, 144 bytes: d, dmin, u8 scales[12], u8 qs[128]
//         8 sub-blocks of 32 with 6-bit scale sc_s and min m_s packed in `scales`:
//           s < 4: sc = scales[s] & 63, m = scales[s + 4] & 63
//           s >= 4: sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4,
//                   m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4
//         chunk c = 0..3 covers values [64 c, 64 c + 64): sub-block 2c = low nibbles of
//         qs[32 c + l], sub-block 2c + 1 = their high nibbles (l = 0..31);
//         y = (d * sc) * q - (dmin * m), each product in float32
//   Q5_K  QK 256, 176 bytes: d, dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//         as Q4_K, plus 16 when bit 2c (low-nibble sub-block) or 2c + 1 (high) of qh[l] is set
//   Q6_K  QK 256, 210 bytes: u8 ql[128], u8 qh[64], int8 scales[16], d (last)
//         two halves of 128 values (ql += 64, qh += 32, scales += 8 per half); for l = 0..31:
//           y[l]      = d * sc[l/16 + 0] * q(ql[l] & 15,      qh[l] >> 0)
//           y[l + 32] = d * sc[l/16 + 2] * q(ql[l + 32] & 15, qh[l] >> 2)
//           y[l + 64] = d * sc[l/16 + 4] * q(ql[l] >> 4,      qh[l] >> 4)
//           y[l + 96] = d * sc[l/16 + 6] * q(ql[l + 32] >> 4, qh[l] >> 6)
//         q(lo, hi) = (lo | (hi & 3) << 4) - 32; computed as (d * sc) * q in float32
#include <cstddef>
#include <cstdint>

#include "format/gguf.h"

namespace phinfer::format {

// Whether dequantize() handles this type.
bool can_dequantize(GgmlType t);
// The types it handles, for messages: "F32, F16, BF16, Q8_0, ...".
const char* dequantizable_type_names();

// n values (a multiple of the type's block size) from `src` into out, exactly as ggml's to_float
// does (bit-identical float32). The caller has checked can_dequantize(t) and the byte count.
void dequantize(GgmlType t, const std::byte* src, int64_t n, float* out);

// Q4_K / Q5_K: the 6-bit scale and min of sub-block s (0..7) of a block's 12 scale bytes.
inline void k_scale_min(int s, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
  if (s < 4) {
    *sc = scales[s] & 63;
    *m = scales[s + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
  }
}

}  // namespace phinfer::format
