#version 460
// out[t, i] = SiLU(gate[t, i]) * up[t, i], gate_up rows [gate | up] of 2n.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t gate_up, out_;
  uint n, rows;
} p;

void main() {
  const uint total = p.n * p.rows;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += gl_NumWorkGroups.x * 64u) {
    const uint t = e / p.n, i = e - t * p.n;
    Floats gu = Floats(p.gate_up + uint64_t(t) * uint64_t(2u * p.n) * 4ul);
    const float g = gu.v[i];
    Floats(p.out_).v[e] = g / (1.0 + exp_approx(-g)) * gu.v[p.n + i];
  }
}
