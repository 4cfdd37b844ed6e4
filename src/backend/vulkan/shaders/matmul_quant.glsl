// The body of matmul_quant.comp and matmul_quant_dot.comp (the latter with INTEGER_DOT defined).
// y[t, row] (+)= sum over blocks j of fma(d_j dx_j, I_j, acc) [+ m_j dx_j s_j] for a packed Int8/Int4
// matrix (kernels/quant.h numerics; I_j exact in int32). One workgroup per tile of 16 rows and up to
// 8 tokens: invocation (lane, r) = (id / 16, id % 16) takes row r of the tile and blocks
// j = lane, lane + 4, ...; the four lanes' sums are added in a fixed order. Consecutive
// invocations read consecutive words of a chunk (the layout's 16 rows x 4 bytes).
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t w, q, dx, sums, y;
  QuantLayout L;
  uint cols, rows, tokens, y_stride, accumulate, q_words;
} p;
shared float red[64 * 8];

#ifdef INTEGER_DOT
// OpSUDotKHR (SPV_KHR_integer_dot_product): signed x unsigned 8-bit lanes packed in 32 bits
// (packed vector format 0), the instruction int8 dot-product hardware executes.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int dot_su(uint signed_packed, uint unsigned_packed, spirv_literal int packed_format);
int dot4(uint codes, uint acts) { return dot_su(acts, codes, 0); }
#else
int dot4(uint codes, uint acts) {
  int s = 0;
  for (uint b = 0u; b < 4u; ++b) s += int((codes >> (8u * b)) & 0xFFu) * bitfieldExtract(int(acts), int(8u * b), 8);
  return s;
}
#endif

void main() {
  const uint tid = gl_LocalInvocationID.x, r = tid % 16u, lane = tid / 16u;
  const uint n_tiles = (p.rows + 15u) / 16u;
  const int z = int(zero_point(p.L));
  for (uint tile = gl_WorkGroupID.x; tile < n_tiles; tile += gl_NumWorkGroups.x)
    for (uint t0 = gl_WorkGroupID.y * 8u; t0 < p.tokens; t0 += gl_NumWorkGroups.y * 8u) {
      const uint T = min(8u, p.tokens - t0);
      const uint64_t base = p.w + uint64_t(tile) * uint64_t(p.L.tile_bytes);
      Words sc = Words(base + uint64_t(p.L.quant_bytes));
      Words mn = Words(base + uint64_t(p.L.quant_bytes + p.L.scale_bytes));
      float acc[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
      for (uint j = lane; j < p.L.n_blocks; j += 4u) {
        int I[8] = int[8](0, 0, 0, 0, 0, 0, 0, 0);
        const uint k0 = j * p.L.block_chunks, nk = block_n_chunks(p.L, p.cols, j);
        for (uint k = k0; k < k0 + nk; ++k) {
          const uint word = Words(base + uint64_t(k * 64u + 4u * r)).v[0];
          if (p.L.bits == 8u) {
            [[unroll]] for (uint t = 0u; t < 8u; ++t)
              if (t < T) I[t] += dot4(word, Words(p.q).v[(t0 + t) * p.q_words + k]);
          } else {
            const uint lo = word & 0x0F0F0F0Fu, hi = (word >> 4) & 0x0F0F0F0Fu;
            [[unroll]] for (uint t = 0u; t < 8u; ++t)
              if (t < T) {
                const uint a = (t0 + t) * p.q_words + 2u * k;
                I[t] += dot4(lo, Words(p.q).v[a]) + dot4(hi, Words(p.q).v[a + 1u]);
              }
          }
        }
        const uint si = (p.L.per_row_scale != 0u ? 0u : j) * 16u + r;
        const float d = half_at(sc, si);
        const float m = p.L.symmetric != 0u ? 0.0 : half_at(mn, si);
        [[unroll]] for (uint t = 0u; t < 8u; ++t)
          if (t < T) {
            const uint bj = (t0 + t) * p.L.n_blocks + j;
            const int s = Ints(p.sums).v[bj];
            const float dx = Floats(p.dx).v[bj];
            acc[t] = fma(d * dx, float(I[t] - z * s), acc[t]);
            if (p.L.symmetric == 0u) acc[t] = fma(m, dx * float(s), acc[t]);
          }
      }
      [[unroll]] for (uint t = 0u; t < 8u; ++t) red[tid * 8u + t] = acc[t];
      barrier();
      const uint row = tile * 16u + r;
      if (lane == 0u && row < p.rows)
        for (uint t = 0u; t < T; ++t) {
          const float v = (red[r * 8u + t] + red[(16u + r) * 8u + t]) + (red[(32u + r) * 8u + t] + red[(48u + r) * 8u + t]);
          Floats y = Floats(p.y + (uint64_t(t0 + t) * uint64_t(p.y_stride) + uint64_t(row)) * 4ul);
          y.v[0] = p.accumulate != 0u ? y.v[0] + v : v;
        }
      barrier();
    }
}
