#version 460
// Rotates the query and key heads of each row (rotate_half pairs dim i with i + rotary_dim / 2;
// dims past rotary_dim pass through) with the row's cos/sin (computed on the host exactly as the CPU
// backend does), and writes the row's keys and values into its sequence's KV cache at its position.
// One workgroup per row; every invocation stores only values it computed itself.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t qkv, cos_, sin_, rows_info;
  uint layer, n_heads, n_kv_heads, head_dim, half_rot, q_dim, kv_dim, qkv_stride, rows;
} p;

void main() {
  const uint tid = gl_LocalInvocationID.x;
  for (uint t = gl_WorkGroupID.x; t < p.rows; t += gl_NumWorkGroups.x) {
    const RowInfo info = RowInfos(p.rows_info).v[t];
    Floats row = Floats(p.qkv + uint64_t(t) * uint64_t(p.qkv_stride) * 4ul);
    Floats cs = Floats(p.cos_ + uint64_t(t) * uint64_t(p.half_rot) * 4ul);
    Floats sn = Floats(p.sin_ + uint64_t(t) * uint64_t(p.half_rot) * 4ul);
    const uint64_t slot = (uint64_t(p.layer) * uint64_t(info.capacity) + uint64_t(info.position)) * uint64_t(p.kv_dim) * 4ul;
    Floats kc = Floats(info.k_addr + slot);
    Floats vc = Floats(info.v_addr + slot);
    const uint half_rot = p.half_rot, hd = p.head_dim;
    for (uint idx = tid; idx < (p.n_heads + p.n_kv_heads) * half_rot; idx += 64u) {
      const uint hh = idx / half_rot, i = idx - hh * half_rot;
      const uint off = hh < p.n_heads ? hh * hd : p.q_dim + (hh - p.n_heads) * hd;
      const float a = row.v[off + i], b = row.v[off + i + half_rot];
      precise float ra = a * cs.v[i] - b * sn.v[i];
      precise float rb = b * cs.v[i] + a * sn.v[i];
      row.v[off + i] = ra;
      row.v[off + i + half_rot] = rb;
      if (hh >= p.n_heads) {
        const uint ko = (hh - p.n_heads) * hd;
        kc.v[ko + i] = ra;
        kc.v[ko + i + half_rot] = rb;
      }
    }
    const uint pass = hd - 2u * half_rot;  // key dims past rotary_dim
    for (uint idx = tid; idx < p.n_kv_heads * pass; idx += 64u) {
      const uint h = idx / pass, d = 2u * half_rot + idx - h * pass;
      kc.v[h * hd + d] = row.v[p.q_dim + h * hd + d];
    }
    for (uint i = tid; i < p.kv_dim; i += 64u) vc.v[i] = row.v[p.q_dim + p.kv_dim + i];
  }
}
