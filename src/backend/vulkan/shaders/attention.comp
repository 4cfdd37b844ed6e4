#version 460
// Causal attention of one row and one query head over its sequence's cached keys and values
// (grouped KV heads, sliding window), with an online softmax (as in FlashAttention) over key blocks
// of 64 aligned to absolute positions: invocation i scores key k0 + i; every invocation takes the
// block's max and sum (in key order) from shared memory, then accumulates its own output dims over
// the block's keys in order.
// A row's result depends only on its own sequence. Grid: (rows, heads).
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t qkv, out_, rows_info;
  uint layer, group, head_dim, q_dim, kv_dim, qkv_stride, rows, n_heads;
  float scale;
} p;
shared float probs[64];
shared float scores[64];

#define NEG_INF uintBitsToFloat(0xFF800000u)

void main() {
  const uint tid = gl_LocalInvocationID.x, hd = p.head_dim;
  for (uint t = gl_WorkGroupID.x; t < p.rows; t += gl_NumWorkGroups.x)
    for (uint h = gl_WorkGroupID.y; h < p.n_heads; h += gl_NumWorkGroups.y) {
      const RowInfo info = RowInfos(p.rows_info).v[t];
      const uint kvh = h / p.group;
      Floats q = Floats(p.qkv + (uint64_t(t) * uint64_t(p.qkv_stride) + uint64_t(h * hd)) * 4ul);
      const uint64_t layer_off = (uint64_t(p.layer) * uint64_t(info.capacity) * uint64_t(p.kv_dim) + uint64_t(kvh * hd)) * 4ul;
      const uint64_t kbase = info.k_addr + layer_off, vbase = info.v_addr + layer_off;
      const uint64_t key_stride = uint64_t(p.kv_dim) * 4ul;
      float m = NEG_INF, l = 0.0;
      float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
      const int first = info.first_key, last = info.position;
      for (int k0 = (first / 64) * 64; k0 <= last; k0 += 64) {
        const int j = k0 + int(tid);
        const bool valid = j >= first && j <= last;
        float s = NEG_INF;
        if (valid) {
          Floats k = Floats(kbase + uint64_t(j) * key_stride);
          float d = 0.0;
          for (uint i = 0u; i < hd; ++i) d = fma(q.v[i], k.v[i], d);
          s = d * p.scale;
        }
        scores[tid] = s;
        barrier();
        // Every invocation reads the block's 64 scores itself (a max is exact in any order; the sum
        // below goes in key order): three barriers a block instead of two reduction trees.
        float block_max = NEG_INF;
        for (uint i = 0u; i < 64u; ++i) block_max = max(block_max, scores[i]);
        const float new_m = max(m, block_max);
        probs[tid] = valid ? exp_approx(s - new_m) : 0.0;
        barrier();
        float block_sum = 0.0;
        for (uint i = 0u; i < 64u; ++i) block_sum += probs[i];
        const float corr = m == NEG_INF ? 0.0 : exp_approx(m - new_m);
        l = fma(l, corr, block_sum);
        const int i0 = max(k0, first) - k0, i1 = min(k0 + 64, last + 1) - k0;
        [[unroll]] for (uint a = 0u; a < 4u; ++a) {
          const uint d = tid + 64u * a;
          if (d < hd) {
            float v = acc[a] * corr;
            for (int i = i0; i < i1; ++i) v = fma(probs[i], Floats(vbase + uint64_t(k0 + i) * key_stride).v[d], v);
            acc[a] = v;
          }
        }
        m = new_m;
        barrier();
      }
      Floats o = Floats(p.out_ + (uint64_t(t) * uint64_t(p.q_dim) + uint64_t(h * hd)) * 4ul);
      [[unroll]] for (uint a = 0u; a < 4u; ++a) {
        const uint d = tid + 64u * a;
        if (d < hd) o.v[d] = acc[a] / l;
      }
    }
}
