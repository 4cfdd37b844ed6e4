#version 460
// The memory bandwidth probe of `phinfer bench --device gpu`: every invocation sums a strided
// slice of a large buffer (uvec4 loads, consecutive invocations on consecutive addresses) and writes
// one value, so the whole buffer is read once per dispatch.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Vec4s { uvec4 v[]; };
layout(push_constant) uniform Push {
  uint64_t src, dst;
  uint n_vec4;
} p;

void main() {
  const uint stride = gl_NumWorkGroups.x * 256u;
  uint s = 0u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n_vec4; i += stride) {
    const uvec4 v = Vec4s(p.src).v[i];
    s += v.x ^ v.y ^ v.z ^ v.w;
  }
  Words(p.dst).v[gl_GlobalInvocationID.x] = s;
}
