#version 460
// Activations quantized to int8 per token and per weight block, as kernels/quant.h specifies:
// a = max|x| over the block, q = round-half-even(x * (127 / a)) (zeros when a < 1e-30), dx = a / 127,
// s = sum q. Codes are stored in the packed matrix's padded column order (one uint32 per 4 codes:
// Int8 chunk k is word k; Int4 chunk k is words 2k (its low-nibble columns) and 2k + 1), so the
// matmul reads one activation word per weight byte lane. One workgroup per (block, token).
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t x, q, dx, sums;
  QuantLayout L;
  uint cols, tokens, q_words;  // q_words: words per token
} p;
shared float red_max[64];
shared int red_sum[64];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint cw = chunk_cols(p.L);
  for (uint t = gl_WorkGroupID.y; t < p.tokens; t += gl_NumWorkGroups.y)
    for (uint j = gl_WorkGroupID.x; j < p.L.n_blocks; j += gl_NumWorkGroups.x) {
      Floats x = Floats(p.x + (uint64_t(t) * uint64_t(p.cols) + uint64_t(j * p.L.block)) * 4ul);
      const uint len = block_len(p.L, p.cols, j);
      float amax = 0.0;
      for (uint c = tid; c < len; c += 64u) amax = max(amax, abs(x.v[c]));
      red_max[tid] = amax;
      barrier();
      for (uint w = 32u; w > 0u; w >>= 1) {
        if (tid < w) red_max[tid] = max(red_max[tid], red_max[tid + w]);
        barrier();
      }
      amax = red_max[0];
      const bool zero = !(amax >= 1e-30);
      const float inv = zero ? 0.0 : 127.0 / amax;
      // This block's words: chunks [j cb, j cb + nk), 64 / 8 = CW / 4 words per chunk.
      const uint words_per_chunk = cw / 4u;
      const uint w0 = j * p.L.block_chunks * words_per_chunk;
      const uint nw = block_n_chunks(p.L, p.cols, j) * words_per_chunk;
      Words q = Words(p.q + (uint64_t(t) * uint64_t(p.q_words) + uint64_t(w0)) * 4ul);
      int s = 0;
      for (uint w = tid; w < nw; w += 64u) {
        const uint first = w * 4u;  // padded position within the block
        uint packed = 0u;
        for (uint e = 0u; e < 4u; ++e) {
          const uint c = first + e;  // chunks are contiguous within a block: column offset == padded offset
          int v = 0;
          if (!zero && c < len) v = clamp(int(roundEven(x.v[c] * inv)), -127, 127);
          s += v;
          packed |= (uint(v) & 0xFFu) << (8u * e);
        }
        q.v[w] = packed;
      }
      red_sum[tid] = s;
      barrier();
      for (uint w = 32u; w > 0u; w >>= 1) {
        if (tid < w) red_sum[tid] += red_sum[tid + w];
        barrier();
      }
      if (tid == 0u) {
        Floats(p.dx).v[t * p.L.n_blocks + j] = zero ? 0.0 : amax / 127.0;
        Ints(p.sums).v[t * p.L.n_blocks + j] = red_sum[0];
      }
      barrier();
    }
}
