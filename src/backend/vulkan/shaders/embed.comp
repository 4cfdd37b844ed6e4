#version 460
// x[t] = row tokens[t] of the embedding matrix, dequantized to fp32. One workgroup per row.
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t weights, tokens, x;
  QuantLayout L;
  uint format, cols, rows;
} p;

void main() {
  for (uint t = gl_WorkGroupID.x; t < p.rows; t += gl_NumWorkGroups.x) {
    const uint id = uint(Ints(p.tokens).v[t]);
    Floats x = Floats(p.x + uint64_t(t) * uint64_t(p.cols) * 4ul);
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 64u)
      x.v[c] = p.format >= FORMAT_INT8 ? dequantize(p.weights, p.L, id, c)
                                       : load_float(p.weights, p.format, uint64_t(id) * uint64_t(p.cols) + c);
  }
}
