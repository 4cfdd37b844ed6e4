#version 460
// out[r] = x[src(r)] / sqrt(mean(x^2) + eps) * weight, src(r) = r or rows_index[r]. One workgroup
// per row; the sum of squares in a fixed order (64 strided partial sums, then a tree), so a row's
// result does not depend on the other rows.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t x, weight, out_, rows_index;  // rows_index: 0 for the identity
  uint n, rows;
  float eps;
} p;
shared float partial[64];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
    const uint src = p.rows_index != 0ul ? uint(Ints(p.rows_index).v[r]) : r;
    Floats x = Floats(p.x + uint64_t(src) * uint64_t(p.n) * 4ul);
    Floats o = Floats(p.out_ + uint64_t(r) * uint64_t(p.n) * 4ul);
    float s = 0.0;
    for (uint i = tid; i < p.n; i += 64u) s = fma(x.v[i], x.v[i], s);
    partial[tid] = s;
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1) {
      if (tid < w) partial[tid] += partial[tid + w];
      barrier();
    }
    const float scale = 1.0 / sqrt(partial[0] / float(p.n) + p.eps);
    barrier();
    Floats w = Floats(p.weight);
    for (uint i = tid; i < p.n; i += 64u) o.v[i] = w.v[i] * (x.v[i] * scale);
  }
}
