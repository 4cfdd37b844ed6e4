#version 460
// Causal attention for a block of up to 16 consecutive rows of one sequence and one query head over
// the sequence's cached keys and values (grouped KV heads, sliding window), with an online softmax
// (as in FlashAttention) over key blocks of 64 aligned to absolute positions. The block's queries sit
// in shared memory; invocation i scores key k0 + i against all of them (each key read once per block
// of rows, not once per row), the rows' max and sum (in key order) come from shared memory, and each
// invocation accumulates its own output dims of every row over the keys in order.
// A row's arithmetic is the same whichever rows share its block: its result depends only on its own
// sequence. Grid: (jobs, heads); a job is {first row, rows}.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
  uint64_t qkv, out_, rows_info, jobs;
  uint layer, group, head_dim, q_dim, kv_dim, qkv_stride, n_jobs, n_heads;
  float scale;
} p;

const uint ROWS = 16u, MAX_HEAD_DIM = 128u;
shared float q_sh[ROWS * MAX_HEAD_DIM];
shared float probs[ROWS * 64u];
shared float row_corr[ROWS];
#define NEG_INF uintBitsToFloat(0xFF800000u)

void main() {
  const uint tid = gl_LocalInvocationID.x, hd = p.head_dim;
  for (uint job = gl_WorkGroupID.x; job < p.n_jobs; job += gl_NumWorkGroups.x)
    for (uint h = gl_WorkGroupID.y; h < p.n_heads; h += gl_NumWorkGroups.y) {
      const uint first_row = Words(p.jobs).v[2u * job], n = Words(p.jobs).v[2u * job + 1u];
      const uint kvh = h / p.group;
      // The block's queries into shared memory.
      for (uint e = tid; e < n * hd; e += 64u) {
        const uint r = e / hd, i = e - r * hd;
        q_sh[r * MAX_HEAD_DIM + i] = Floats(p.qkv + (uint64_t(first_row + r) * uint64_t(p.qkv_stride) + uint64_t(h * hd + i)) * 4ul).v[0];
      }
      const RowInfo info0 = RowInfos(p.rows_info).v[first_row];
      const RowInfo infoN = RowInfos(p.rows_info).v[first_row + n - 1u];
      const uint64_t layer_off = (uint64_t(p.layer) * uint64_t(info0.capacity) * uint64_t(p.kv_dim) + uint64_t(kvh * hd)) * 4ul;
      const uint64_t kbase = info0.k_addr + layer_off, vbase = info0.v_addr + layer_off;
      const uint64_t key_stride = uint64_t(p.kv_dim) * 4ul;
      // Per row (invocations r < n keep their row's running max and sum).
      float m = NEG_INF, l = 0.0;
      int first = 0, last = -1;
      if (tid < n) {
        const RowInfo ri = RowInfos(p.rows_info).v[first_row + tid];
        first = ri.first_key;
        last = ri.position;
      }
      float acc[ROWS][2];
      [[unroll]] for (uint r = 0u; r < ROWS; ++r) acc[r][0] = acc[r][1] = 0.0;
      barrier();
      // Key blocks any row of the job sees: from the first row's first block to the last row's position.
      for (int k0 = (info0.first_key / 64) * 64; k0 <= infoN.position; k0 += 64) {
        const int j = k0 + int(tid);
        // Scores of key j against every row (0 where the row does not see it).
        float s[ROWS];
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) s[r] = 0.0;
        if (j <= infoN.position) {
          Floats k = Floats(kbase + uint64_t(j) * key_stride);
          for (uint i = 0u; i < hd; ++i) {
            const float kv = k.v[i];
            [[unroll]] for (uint r = 0u; r < ROWS; ++r) if (r < n) s[r] = fma(q_sh[r * MAX_HEAD_DIM + i], kv, s[r]);
          }
        }
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) if (r < n) probs[r * 64u + tid] = s[r] * p.scale;
        barrier();
        // Invocation r < n: its row's softmax step over this block, if the row sees any key of it.
        if (tid < n) {
          const bool visits = k0 + 63 >= first && k0 <= last;
          float corr = 1.0;
          if (visits) {
            const int i0 = max(k0, first) - k0, i1 = min(k0 + 64, last + 1) - k0;
            float block_max = NEG_INF;
            for (int i = i0; i < i1; ++i) block_max = max(block_max, probs[tid * 64u + uint(i)]);
            const float new_m = max(m, block_max);
            float block_sum = 0.0;
            for (int i = 0; i < 64; ++i) {
              const float pr = i >= i0 && i < i1 ? exp_approx(probs[tid * 64u + uint(i)] - new_m) : 0.0;
              probs[tid * 64u + uint(i)] = pr;
              block_sum += pr;
            }
            corr = m == NEG_INF ? 0.0 : exp_approx(m - new_m);
            l = fma(l, corr, block_sum);
            m = new_m;
          } else {
            for (int i = 0; i < 64; ++i) probs[tid * 64u + uint(i)] = 0.0;
          }
          row_corr[tid] = visits ? corr : 1.0;
        }
        barrier();
        // Outputs: invocation tid owns dims tid and tid + 64 of every row.
        const int kend = min(k0 + 64, infoN.position + 1) - k0;
        for (uint a = 0u; a < 2u; ++a) {
          const uint d = tid + 64u * a;
          if (d >= hd) continue;
          [[unroll]] for (uint r = 0u; r < ROWS; ++r) if (r < n) acc[r][a] *= row_corr[r];
          for (int i = 0; i < kend; ++i) {
            const float v = Floats(vbase + uint64_t(k0 + i) * key_stride).v[d];
            [[unroll]] for (uint r = 0u; r < ROWS; ++r) if (r < n)
              if (probs[r * 64u + uint(i)] != 0.0) acc[r][a] = fma(probs[r * 64u + uint(i)], v, acc[r][a]);
          }
        }
        barrier();
      }
      if (tid < n) row_corr[tid] = l;  // each row's sum, for the division
      barrier();
      for (uint a = 0u; a < 2u; ++a) {
        const uint d = tid + 64u * a;
        if (d >= hd) continue;
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) if (r < n)
          Floats(p.out_ + (uint64_t(first_row + r) * uint64_t(p.q_dim) + uint64_t(h * hd + d)) * 4ul).v[0] = acc[r][a] / row_corr[r];
      }
      barrier();
    }
}
