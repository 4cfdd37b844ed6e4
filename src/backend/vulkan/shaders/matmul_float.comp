#version 460
// y[t, row] (+)= sum_c W[row, c] x[t, c] for a row-major F32/F16/BF16 matrix. One workgroup per 8
// rows and up to 8 tokens: invocation (r, lane) = (id / 8, id % 8) takes row r and columns
// lane, lane + 8, ... (consecutive invocations on consecutive columns; fp32 fused multiply-add),
// then a fixed tree over the 8 lanes, so a token's result does not depend on the other tokens.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t w, x, y;
  uint format, cols, rows, tokens, y_stride, accumulate;
} p;
shared float red[8 * 64];

void main() {
  const uint tid = gl_LocalInvocationID.x, r = tid / 8u, lane = tid % 8u;
  const uint n_groups = (p.rows + 7u) / 8u;
  for (uint g = gl_WorkGroupID.x; g < n_groups; g += gl_NumWorkGroups.x)
    for (uint t0 = gl_WorkGroupID.y * 8u; t0 < p.tokens; t0 += gl_NumWorkGroups.y * 8u) {
      const uint T = min(8u, p.tokens - t0);
      const uint row = g * 8u + r;
      float acc[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
      if (row < p.rows) {
        const uint64_t row_base = uint64_t(row) * uint64_t(p.cols);
        for (uint c = lane; c < p.cols; c += 8u) {
          const float wv = load_float(p.w, p.format, row_base + c);
          [[unroll]] for (uint t = 0u; t < 8u; ++t)
            if (t < T) acc[t] = fma(wv, Floats(p.x).v[(t0 + t) * p.cols + c], acc[t]);
        }
      }
      [[unroll]] for (uint t = 0u; t < 8u; ++t) red[t * 64u + tid] = acc[t];
      barrier();
      for (uint s = 4u; s > 0u; s >>= 1) {
        if (lane < s)
          [[unroll]] for (uint t = 0u; t < 8u; ++t) red[t * 64u + tid] += red[t * 64u + tid + s];
        barrier();
      }
      if (lane < T && g * 8u + r < p.rows) {
        // Invocation (r, lane) writes token `lane` of row r: the sum sits in lane 0's slot.
        const float v = red[lane * 64u + r * 8u];
        Floats y = Floats(p.y + (uint64_t(t0 + lane) * uint64_t(p.y_stride) + uint64_t(row)) * 4ul);
        y.v[0] = p.accumulate != 0u ? y.v[0] + v : v;
      }
      barrier();
    }
}
