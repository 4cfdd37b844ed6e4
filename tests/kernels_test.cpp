// Kernel tests: every weight format on every ISA path this machine can run, bit for bit against
// the scalar reference, on ragged shapes and every group size; quantization error bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "kernels/isa.h"
#include "kernels/matrix.h"
#include "kernels/quant.h"
#include "kernels/thread_pool.h"
#include "phinfer/error.h"

namespace phinfer::kernels {
namespace {

// Restores the automatic ISA choice when a test ends.
struct IsaGuard {
  ~IsaGuard() { reset_isa_for_testing(); }
};

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Activations with a few outliers, like real hidden states.
std::vector<float> activations(size_t n, uint32_t seed) {
  auto v = gaussian(n, seed);
  std::mt19937 rng(seed + 7);
  for (size_t i = 0; i < n; i += 37) v[i] *= 8.0f * std::uniform_real_distribution<float>(0.5f, 1.0f)(rng);
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

std::string fmt_name(WeightFormat f) { return kernels::format_info(f).name; }

// ---------------------------------------------------------------------------------------------
// ISA selection

TEST(KernelsIsa, NamesParseAndScalarAlwaysSupported) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx}) EXPECT_EQ(parse_isa(isa_name(i)), i);
  EXPECT_THROW(parse_isa("sse9"), phinfer::Error);
  EXPECT_TRUE(isa_supported(Isa::Scalar));
  EXPECT_TRUE(isa_supported(best_isa()));
  EXPECT_EQ(supported_isas().front(), Isa::Scalar);
}

TEST(KernelsIsa, EnvironmentVariableForcesPath) {
  IsaGuard guard;
  for (Isa i : supported_isas()) {
    setenv("PHINFER_ISA", std::string(isa_name(i)).c_str(), 1);
    reset_isa_for_testing();
    EXPECT_EQ(active_isa(), i);
    EXPECT_EQ(active_isa_name(), isa_name(i));
  }
  setenv("PHINFER_ISA", "avx1024", 1);
  reset_isa_for_testing();
  EXPECT_THROW(active_isa(), phinfer::Error);
  for (Isa i : {Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx}) {
    if (isa_supported(i)) continue;
    setenv("PHINFER_ISA", std::string(isa_name(i)).c_str(), 1);
    reset_isa_for_testing();
    EXPECT_THROW(active_isa(), phinfer::Error) << isa_name(i);
    EXPECT_THROW(set_isa_for_testing(i), phinfer::Error);
  }
  unsetenv("PHINFER_ISA");
  reset_isa_for_testing();
  EXPECT_EQ(active_isa(), best_isa());
}

// ---------------------------------------------------------------------------------------------
// Layout and quantization

TEST(KernelsQuant, LayoutSizesAndBitsPerWeight) {
  const double n = 3072.0 * 3072.0;
  EXPECT_DOUBLE_EQ(8.0 * quantized_size(WeightFormat::Int4, 3072, 3072, 128, true) / n, 4.125);
  EXPECT_DOUBLE_EQ(8.0 * quantized_size(WeightFormat::Int4, 3072, 3072, 128, false) / n, 4.25);
  EXPECT_LT(8.0 * quantized_size(WeightFormat::Int8, 3072, 3072, -1, true) / n, 8.02);
  // Ragged: 172 columns in groups of 48 -> blocks 48, 48, 48, 28 -> 6 + 6 + 6 + 4 chunks of 8.
  const QuantLayout L = QuantLayout::of(WeightFormat::Int4, 17, 172, 48, false);
  EXPECT_EQ(L.n_blocks, 4);
  EXPECT_EQ(L.n_chunks, 22);
  EXPECT_EQ(L.n_tiles, 2);
  EXPECT_EQ(L.tile_bytes % 64, 0);
  EXPECT_EQ(L.total_bytes, static_cast<size_t>(2 * (22 * 64 + 2 * 128)));
  EXPECT_THROW(QuantLayout::of(WeightFormat::Int4, 4, 64, 0, true), phinfer::Error);
  EXPECT_THROW(QuantLayout::of(WeightFormat::F16, 4, 64, 32, true), phinfer::Error);
}

struct QCase {
  WeightFormat format;
  int group;
  bool sym;
};

const std::vector<QCase> kQCases = {
    {WeightFormat::Int8, -1, true}, {WeightFormat::Int8, -1, false}, {WeightFormat::Int8, 32, true},
    {WeightFormat::Int8, 64, false}, {WeightFormat::Int8, 128, true}, {WeightFormat::Int8, 48, true},
    {WeightFormat::Int4, -1, true}, {WeightFormat::Int4, -1, false}, {WeightFormat::Int4, 32, true},
    {WeightFormat::Int4, 32, false}, {WeightFormat::Int4, 64, true}, {WeightFormat::Int4, 128, true},
    {WeightFormat::Int4, 128, false}, {WeightFormat::Int4, 48, true}, {WeightFormat::Int4, 48, false},
};

std::string qname(const QCase& q) {
  return fmt_name(q.format) + " g" + std::to_string(q.group) + (q.sym ? " sym" : " asym");
}

TEST(KernelsQuant, DequantizeMatchesReportedErrorAndBounds) {
  const int64_t rows = 37, cols = 256;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 11, 0.02f);
  for (const QCase& qc : kQCases) {
    SCOPED_TRACE(qname(qc));
    const QuantizedMatrix q = quantize(w.data(), rows, cols, {qc.format, qc.group, qc.sym, QuantMethod::Search});
    const QuantError e = quantization_error(w.data(), q.view());
    EXPECT_NEAR(e.rel_rmse, q.error.rel_rmse, 1e-9);
    EXPECT_NEAR(e.max_abs, q.error.max_abs, 1e-9);
    // Dequantized rows agree with row_to_f32 and row spans.
    std::vector<float> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
    for (int64_t r : {int64_t{0}, int64_t{16}, rows - 1}) {
      dequantize_row(q.view(), r, a.data());
      q.view().row_to_f32(r, b.data());
      EXPECT_EQ(a, b);
      q.view().row_span_to_f32(r, 5, 100, b.data());
      for (int i = 0; i < 100; ++i) EXPECT_EQ(a[static_cast<size_t>(5 + i)], b[static_cast<size_t>(i)]);
    }
    if (qc.format == WeightFormat::Int8) {
      EXPECT_LT(e.rel_rmse, qc.group == -1 ? 0.01 : 0.007);
    } else {
      EXPECT_LT(e.rel_rmse, qc.group == -1 ? 0.13 : 0.115);
    }
  }
}

TEST(KernelsQuant, ErrorMinimizingSearchBeatsPlainRounding) {
  const int64_t rows = 64, cols = 512;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 5, 0.05f);
  for (const QCase& qc : kQCases) {
    SCOPED_TRACE(qname(qc));
    const auto plain = quantize(w.data(), rows, cols, {qc.format, qc.group, qc.sym, QuantMethod::MinMax});
    const auto best = quantize(w.data(), rows, cols, {qc.format, qc.group, qc.sym, QuantMethod::Search});
    EXPECT_LT(best.error.rmse, plain.error.rmse);
    if (qc.format == WeightFormat::Int4) {
      EXPECT_LT(best.error.rmse, 0.97 * plain.error.rmse);
    }
  }
}

TEST(KernelsQuant, Q8PerChannelRelativeErrorBelowOnePercent) {
  const int64_t rows = 32, cols = 3072;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 3, 0.03f);
  const auto q = quantize(w.data(), rows, cols, {WeightFormat::Int8, -1, true, QuantMethod::Search});
  EXPECT_LT(q.error.rel_rmse, 0.01);
  std::vector<float> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    q.view().row_to_f32(r, d.data());
    double se = 0, sr = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double ref = w[static_cast<size_t>(r * cols + c)];
      se += (ref - d[static_cast<size_t>(c)]) * (ref - d[static_cast<size_t>(c)]);
      sr += ref * ref;
    }
    EXPECT_LT(std::sqrt(se / sr), 0.011) << "row " << r;
  }
}

TEST(KernelsQuant, ConstantAndZeroGroups) {
  const int64_t rows = 16, cols = 64;
  std::vector<float> w(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t c = 0; c < cols; ++c) w[static_cast<size_t>(cols + c)] = 0.25f;   // row 1 constant
  for (int64_t c = 0; c < cols; ++c) w[static_cast<size_t>(2 * cols + c)] = -3.0f;  // row 2 constant
  for (const QCase& qc : kQCases) {
    SCOPED_TRACE(qname(qc));
    const auto q = quantize(w.data(), rows, cols, {qc.format, qc.group, qc.sym, QuantMethod::Search});
    std::vector<float> d(static_cast<size_t>(cols));
    for (int64_t r = 0; r < 3; ++r) {
      q.view().row_to_f32(r, d.data());
      for (int64_t c = 0; c < cols; ++c)
        EXPECT_NEAR(d[static_cast<size_t>(c)], w[static_cast<size_t>(r * cols + c)], 2e-3) << r << "," << c;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Matmul: every ISA path bit for bit against scalar; scalar against a double reference.

struct MatmulCase {
  int64_t rows, cols;
};

// Runs y = W x on `isa`; returns y [n_tokens, rows] (y_stride = rows + 3 to check striding).
std::vector<float> run_matmul(Isa isa, const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens,
                              ThreadPool& pool) {
  set_isa_for_testing(isa);
  const int64_t ys = w.rows + 3;
  std::vector<float> y(static_cast<size_t>(n_tokens * ys), -777.0f);
  matmul(w, x.data(), n_tokens, y.data(), ys, pool);
  std::vector<float> out(static_cast<size_t>(n_tokens * w.rows));
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      out[static_cast<size_t>(t * w.rows + r)] = y[static_cast<size_t>(t * ys + r)];
      for (int64_t g = w.rows; g < ys; ++g) EXPECT_EQ(y[static_cast<size_t>(t * ys + g)], -777.0f);
    }
  return out;
}

void expect_identical(const std::vector<float>& ref, const std::vector<float>& got, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size());
  int bad = 0;
  for (size_t i = 0; i < ref.size() && bad < 5; ++i)
    if (!same_bits(ref[i], got[i])) {
      ADD_FAILURE() << what << ": element " << i << " scalar " << ref[i] << " vs " << got[i];
      ++bad;
    }
}

// |y - sum_c Wdeq x| is bounded by the activation rounding: sum over blocks of dx/2 * sum |w|,
// plus fp32 accumulation error.
void expect_close_to_dequantized(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens,
                                 const std::vector<float>& y, const std::string& what) {
  const QuantLayout L = QuantLayout::of(w);
  std::vector<float> row(static_cast<size_t>(w.cols));
  int bad = 0;
  for (int64_t r = 0; r < w.rows; ++r) {
    w.row_to_f32(r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + t * w.cols;
      double ref = 0, bound = 0, mag = 0;
      for (int64_t j = 0; j < L.n_blocks; ++j) {
        double amax = 0, wabs = 0;
        for (int64_t c = L.block_begin(j); c < L.block_begin(j) + L.block_len(j); ++c) {
          amax = std::max(amax, std::fabs(static_cast<double>(xt[c])));
          wabs += std::fabs(row[static_cast<size_t>(c)]);
          ref += static_cast<double>(row[static_cast<size_t>(c)]) * xt[c];
          mag += std::fabs(static_cast<double>(row[static_cast<size_t>(c)]) * xt[c]);
        }
        bound += amax / 127.0 / 2.0 * wabs;
      }
      bound = bound * 1.001 + 1e-5 * mag + 1e-30;
      const double got = y[static_cast<size_t>(t * w.rows + r)];
      if (!(std::fabs(got - ref) <= bound) && bad++ < 5)
        ADD_FAILURE() << what << ": row " << r << " token " << t << " got " << got << " ref " << ref << " bound "
                      << bound;
    }
  }
}

TEST(KernelsMatmul, QuantizedEveryIsaMatchesScalarBitForBit) {
  IsaGuard guard;
  ThreadPool pool(2);
  const std::vector<MatmulCase> shapes = {{1, 64}, {16, 256}, {17, 172}, {40, 200}, {35, 260}};
  uint32_t seed = 100;
  for (const MatmulCase& s : shapes)
    for (const QCase& qc : kQCases) {
      const auto w = gaussian(static_cast<size_t>(s.rows * s.cols), ++seed, 0.05f);
      const auto q = quantize(w.data(), s.rows, s.cols, {qc.format, qc.group, qc.sym, QuantMethod::Search});
      for (int64_t nt : {1, 3, 17, 64}) {
        const auto x = activations(static_cast<size_t>(nt * s.cols), ++seed);
        const std::string what = qname(qc) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " tokens " +
                                 std::to_string(nt);
        const auto ref = run_matmul(Isa::Scalar, q.view(), x, nt, pool);
        expect_close_to_dequantized(q.view(), x, nt, ref, what + " scalar");
        for (Isa isa : supported_isas()) {
          if (isa == Isa::Scalar) continue;
          expect_identical(ref, run_matmul(isa, q.view(), x, nt, pool), what + " " + std::string(isa_name(isa)));
        }
      }
    }
}

// The tile kernel's own edges: token counts around its 16-token groups and 32-token panels, an odd
// number of 16-row tiles per thread (a lone last tile), a short last row tile, widths that end in a
// partial tile step, and group sizes whose step is not 16 sub-chunks (32, 48).
TEST(KernelsMatmul, AmxTilesMatchScalarBitForBit) {
  if (!isa_supported(Isa::Amx)) GTEST_SKIP() << "this CPU or OS has no AMX-INT8; the tile kernel is not run here";
  IsaGuard guard;
  uint32_t seed = 900;
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    // Int4 groups of 120: 30 sub-chunks a block, so a tile step is 15 of them and steps begin and end
    // in the middle of a chunk. 8 to 32 tokens: one panel, its codes unpacked step by step.
    std::vector<QCase> cases = kQCases;
    cases.push_back({WeightFormat::Int4, 120, true});
    cases.push_back({WeightFormat::Int4, 120, false});
    for (const MatmulCase& s : std::vector<MatmulCase>{{80, 384}, {45, 200}, {16, 1000}}) {
      for (const QCase& qc : cases) {
        const auto w = gaussian(static_cast<size_t>(s.rows * s.cols), ++seed, 0.05f);
        const auto q = quantize(w.data(), s.rows, s.cols, {qc.format, qc.group, qc.sym, QuantMethod::MinMax});
        for (int64_t nt : {2, 8, 9, 16, 31, 32, 33, 70}) {
          const auto x = activations(static_cast<size_t>(nt * s.cols), ++seed);
          const std::string what = qname(qc) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                                   " tokens " + std::to_string(nt) + " threads " + std::to_string(threads);
          expect_identical(run_matmul(Isa::Scalar, q.view(), x, nt, pool), run_matmul(Isa::Amx, q.view(), x, nt, pool),
                           what);
        }
      }
    }
  }
}

TEST(KernelsMatmul, QuantizedZeroAndOutlierActivations) {
  IsaGuard guard;
  ThreadPool pool(1);
  const int64_t rows = 33, cols = 300;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 9, 0.05f);
  std::vector<float> x(static_cast<size_t>(3 * cols), 0.0f);   // token 0 all zero but subnormal values
  for (int64_t c = 0; c < cols; c += 3) x[static_cast<size_t>(c)] = c % 2 ? 1e-39f : -3e-45f;  // (127 / amax overflows)
  for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(cols + c)] = c == 7 ? 1e4f : 1e-3f;  // one huge outlier
  for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(2 * cols + c)] = -1.0f;
  for (const QCase& qc : kQCases) {
    const auto q = quantize(w.data(), rows, cols, {qc.format, qc.group, qc.sym, QuantMethod::Search});
    const auto ref = run_matmul(Isa::Scalar, q.view(), x, 3, pool);
    for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(ref[static_cast<size_t>(r)], 0.0f);
    expect_close_to_dequantized(q.view(), x, 3, ref, qname(qc));
    for (Isa isa : supported_isas()) expect_identical(ref, run_matmul(isa, q.view(), x, 3, pool), qname(qc) + " " + std::string(isa_name(isa)));
  }
}

std::vector<uint16_t> to_half(const std::vector<float>& w, WeightFormat f) {
  std::vector<uint16_t> h(w.size());
  for (size_t i = 0; i < w.size(); ++i) h[i] = f == WeightFormat::F16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
  return h;
}

TEST(KernelsMatmul, FloatFormatsEveryIsaMatchesScalarBitForBit) {
  IsaGuard guard;
  ThreadPool pool(2);
  const std::vector<MatmulCase> shapes = {{1, 7}, {5, 16}, {17, 172}, {33, 200}, {64, 97}};
  uint32_t seed = 500;
  for (const MatmulCase& s : shapes)
    for (WeightFormat f : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16}) {
      const auto wf = gaussian(static_cast<size_t>(s.rows * s.cols), ++seed, 0.1f);
      const auto wh = to_half(wf, f);
      WeightMatrix w;
      w.format = f;
      w.rows = s.rows;
      w.cols = s.cols;
      w.data = f == WeightFormat::F32 ? reinterpret_cast<const std::byte*>(wf.data())
                                      : reinterpret_cast<const std::byte*>(wh.data());
      for (int64_t nt : {1, 3, 17, 64}) {
        const auto x = activations(static_cast<size_t>(nt * s.cols), ++seed);
        const std::string what =
            fmt_name(f) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " tokens " + std::to_string(nt);
        const auto ref = run_matmul(Isa::Scalar, w, x, nt, pool);
        // Scalar against a double-precision reference.
        std::vector<float> row(static_cast<size_t>(s.cols));
        for (int64_t r = 0; r < s.rows; ++r) {
          w.row_to_f32(r, row.data());
          for (int64_t t = 0; t < nt; ++t) {
            double acc = 0, mag = 0;
            for (int64_t c = 0; c < s.cols; ++c) {
              acc += static_cast<double>(row[static_cast<size_t>(c)]) * x[static_cast<size_t>(t * s.cols + c)];
              mag += std::fabs(static_cast<double>(row[static_cast<size_t>(c)]) * x[static_cast<size_t>(t * s.cols + c)]);
            }
            EXPECT_NEAR(ref[static_cast<size_t>(t * s.rows + r)], acc, 1e-6 * mag + 1e-30) << what;
          }
        }
        for (Isa isa : supported_isas()) {
          if (isa == Isa::Scalar) continue;
          expect_identical(ref, run_matmul(isa, w, x, nt, pool), what + " " + std::string(isa_name(isa)));
        }
      }
    }
}

TEST(KernelsMatmul, DotAndAxpyEveryIsaMatchesScalar) {
  IsaGuard guard;
  for (int64_t n : {0, 1, 5, 16, 17, 31, 96, 100, 1000}) {
    const auto a = gaussian(static_cast<size_t>(n), 1 + static_cast<uint32_t>(n));
    const auto b = gaussian(static_cast<size_t>(n), 2 + static_cast<uint32_t>(n));
    set_isa_for_testing(Isa::Scalar);
    const float ref = dot(a.data(), b.data(), n);
    std::vector<float> yref = b;
    axpy(0.37f, a.data(), yref.data(), n);
    for (Isa isa : supported_isas()) {
      set_isa_for_testing(isa);
      EXPECT_TRUE(same_bits(ref, dot(a.data(), b.data(), n))) << isa_name(isa) << " n=" << n;
      std::vector<float> y = b;
      axpy(0.37f, a.data(), y.data(), n);
      expect_identical(yref, y, "axpy " + std::string(isa_name(isa)));
    }
  }
}

TEST(KernelsMatmul, ThreadCountDoesNotChangeResults) {
  IsaGuard guard;
  const int64_t rows = 100, cols = 384, nt = 20;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 77, 0.05f);
  const auto q = quantize(w.data(), rows, cols, {WeightFormat::Int4, 128, false, QuantMethod::Search});
  const auto x = activations(static_cast<size_t>(nt * cols), 78);
  ThreadPool p1(1), p2(2), p3(3);
  const auto ref = run_matmul(best_isa(), q.view(), x, nt, p1);
  expect_identical(ref, run_matmul(best_isa(), q.view(), x, nt, p2), "2 threads");
  expect_identical(ref, run_matmul(best_isa(), q.view(), x, nt, p3), "3 threads");
}

}  // namespace
}  // namespace phinfer::kernels

namespace phinfer::kernels {
namespace {

TEST(KernelsAttentionRows, DotRowsAndAxpyRowsEqualPerRowCallsOnEveryIsa) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t n : {32, 96, 128, 200, 300}) {
    const int64_t rows = 37;
    std::vector<float> q(static_cast<size_t>(n)), x(static_cast<size_t>(rows * n)), p(static_cast<size_t>(rows)),
        y0(static_cast<size_t>(n));
    for (auto* v : {&q, &x, &p, &y0})
      for (auto& e : *v) e = d(rng);
    std::vector<float> ref_dots, ref_y;
    for (Isa isa : supported_isas()) {
      set_isa_for_testing(isa);
      std::vector<float> dots(static_cast<size_t>(rows)), y = y0, y_loop = y0;
      dot_rows(q.data(), x.data(), rows, n, dots.data());
      axpy_rows(p.data(), x.data(), rows, n, y.data());
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(dots[static_cast<size_t>(r)], dot(q.data(), x.data() + r * n, n));
        axpy(p[static_cast<size_t>(r)], x.data() + r * n, y_loop.data(), n);
      }
      EXPECT_EQ(y, y_loop) << isa_name(isa) << " n=" << n;
      if (ref_y.empty()) {
        ref_dots = dots;
        ref_y = y;
      } else {
        EXPECT_EQ(dots, ref_dots) << isa_name(isa);
        EXPECT_EQ(y, ref_y) << isa_name(isa);
      }
    }
    reset_isa_for_testing();
  }
}

}  // namespace
}  // namespace phinfer::kernels

namespace phinfer::kernels {
namespace {

// Inputs for exp and SiLU: a sweep of the whole clamped range and past it, with the special values.
std::vector<float> exp_inputs() {
  std::vector<float> v;
  for (float x = -100.0f; x <= 100.0f; x += 0.0137f) v.push_back(x);
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 0.5f * std::log(2.0f), -0.5f * std::log(2.0f), -86.0f, 88.0f,
                  -87.5f, 88.5f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min()})
    v.push_back(x);
  return v;
}

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

TEST(KernelsElementwise, ExpIsWithinTwoUlpAndTheSameBitsOnEveryIsa) {
  IsaGuard guard;
  const auto in = exp_inputs();
  std::vector<float> ref;
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    // Ragged lengths exercise the tails of the vector loops.
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{17}, static_cast<int64_t>(in.size())}) {
      std::vector<float> x(in.begin(), in.begin() + n);
      exp_minus(x.data(), n, 0.0f);
      if (n < static_cast<int64_t>(in.size())) continue;
      if (ref.empty()) {
        ref = x;
        for (size_t i = 0; i < in.size(); ++i) {
          if (in[i] > 88.0f) {
            EXPECT_EQ(x[i], std::numeric_limits<float>::infinity()) << "exp(" << in[i] << ")";
            continue;
          }
          const float want = static_cast<float>(std::exp(static_cast<double>(std::max(-86.0f, in[i]))));
          ASSERT_TRUE(std::isfinite(x[i]) && x[i] > 0) << "exp(" << in[i] << ") = " << x[i];
          EXPECT_LE(ulps(x[i], want), 2) << "exp(" << in[i] << ") = " << x[i] << ", want " << want;
        }
      } else {
        expect_identical(ref, x, "exp " + std::string(isa_name(isa)));
      }
    }
  }
  // A NaN stays NaN on every path; the shift is subtracted first.
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    std::vector<float> x = {std::nanf(""), 3.0f, 1.0f};
    exp_minus(x.data(), 3, 1.0f);
    EXPECT_TRUE(std::isnan(x[0])) << isa_name(isa);
    EXPECT_LE(ulps(x[1], std::exp(2.0f)), 2) << isa_name(isa);
    EXPECT_EQ(x[2], 1.0f) << isa_name(isa);
  }
}

TEST(KernelsElementwise, SiluMulMatchesTheDefinitionAndIsTheSameBitsOnEveryIsa) {
  IsaGuard guard;
  const auto gate = exp_inputs();
  const auto n = static_cast<int64_t>(gate.size());
  const auto up = gaussian(gate.size(), 99);
  std::vector<float> ref;
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    std::vector<float> out(gate.size());
    silu_mul(gate.data(), up.data(), out.data(), n);
    if (ref.empty()) {
      ref = out;
      for (size_t i = 0; i < gate.size(); ++i) {
        const double g = gate[i];
        if (!std::isfinite(g)) continue;
        const double want = g / (1.0 + std::exp(-g)) * up[i];
        // Below -86 the gate's SiLU is taken as g / (1 + e^86) (< 1e-35 in size where it is not 0).
        EXPECT_NEAR(out[i], want, 4e-7 * std::fabs(want) + 1e-35) << "gate " << g;
      }
    } else {
      expect_identical(ref, out, "silu " + std::string(isa_name(isa)));
    }
  }
}

}  // namespace
}  // namespace phinfer::kernels

namespace phinfer::kernels {
namespace {

// Attention rows stored as f16 or q8 give the bits of converting them to fp32 first, on every path.
TEST(KernelsAttentionRows, HalfAndInt8RowsEqualFp32RowsOfTheirValuesOnEveryIsa) {
  IsaGuard guard;
  std::mt19937_64 rng(11);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> code(-127, 127);
  for (int64_t n : {16, 40, 96, 128, 256, 300}) {
    for (int64_t rows : {1, 3, 4, 37, 64}) {
      std::vector<float> q(static_cast<size_t>(n)), p(static_cast<size_t>(rows)), y0(static_cast<size_t>(n));
      for (auto* v : {&q, &p, &y0})
        for (auto& e : *v) e = d(rng);
      std::vector<uint16_t> h(static_cast<size_t>(rows * n));
      std::vector<int8_t> c(static_cast<size_t>(rows * n));
      std::vector<float> scales(static_cast<size_t>(rows)), hf(h.size()), cf(c.size());
      for (size_t i = 0; i < h.size(); ++i) {
        h[i] = f32_to_f16(d(rng));
        hf[i] = f16_to_f32(h[i]);
        c[i] = static_cast<int8_t>(code(rng));
      }
      for (auto& s : scales) s = std::fabs(d(rng)) / 127.0f;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
          cf[static_cast<size_t>(r * n + i)] = scales[static_cast<size_t>(r)] * static_cast<float>(c[static_cast<size_t>(r * n + i)]);
      for (Isa isa : supported_isas()) {
        set_isa_for_testing(isa);
        const std::string what = std::string(isa_name(isa)) + " n=" + std::to_string(n) + " rows=" + std::to_string(rows);
        std::vector<float> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
        dot_rows(q.data(), hf.data(), rows, n, want.data());
        dot_rows(q.data(), h.data(), rows, n, got.data());
        expect_identical(want, got, "f16 scores " + what);
        dot_rows(q.data(), cf.data(), rows, n, want.data());
        dot_rows(q.data(), c.data(), scales.data(), rows, n, got.data());
        expect_identical(want, got, "q8 scores " + what);
        std::vector<float> yw = y0, yg = y0;
        axpy_rows(p.data(), hf.data(), rows, n, yw.data());
        axpy_rows(p.data(), h.data(), rows, n, yg.data());
        expect_identical(yw, yg, "f16 values " + what);
        yw = y0, yg = y0;
        axpy_rows(p.data(), cf.data(), rows, n, yw.data());
        axpy_rows(p.data(), c.data(), scales.data(), rows, n, yg.data());
        expect_identical(yw, yg, "q8 values " + what);
      }
    }
  }
}

}  // namespace
}  // namespace phinfer::kernels

namespace phinfer::kernels {
namespace {
// Several queries over one block of rows give, query by query, the bits of the one-query calls, for
// every storage precision, head size and ISA path (each path may load a row once for all queries).
TEST(KernelsAttentionRows, SeveralQueriesEqualOneQueryAtATimeOnEveryIsa) {
  IsaGuard guard;
  std::mt19937_64 rng(23);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> code(-127, 127);
  for (int64_t n : {16, 40, 96, 128, 200, 256, 300}) {
    for (int64_t rows : {1, 5, 64}) {
      std::vector<float> x(static_cast<size_t>(rows * n)), scales(static_cast<size_t>(rows));
      std::vector<uint16_t> h(x.size());
      std::vector<int8_t> c(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = d(rng);
        h[i] = f32_to_f16(d(rng));
        c[i] = static_cast<int8_t>(code(rng));
      }
      for (auto& s : scales) s = std::fabs(d(rng)) / 127.0f;
      std::vector<std::vector<float>> q(kMaxQueryRows), p(kMaxQueryRows), y0(kMaxQueryRows);
      for (int i = 0; i < kMaxQueryRows; ++i) {
        q[i].resize(static_cast<size_t>(n));
        p[i].resize(static_cast<size_t>(rows));
        y0[i].resize(static_cast<size_t>(n));
        for (auto* v : {&q[i], &p[i], &y0[i]})
          for (auto& e : *v) e = d(rng);
      }
      for (Isa isa : supported_isas()) {
        set_isa_for_testing(isa);
        for (int nq = 1; nq <= kMaxQueryRows; ++nq) {
          const std::string what = std::string(isa_name(isa)) + " n=" + std::to_string(n) + " rows=" +
                                   std::to_string(rows) + " queries=" + std::to_string(nq);
          // Each storage: the multi-query call, then one call per query.
          auto check = [&](const char* storage, auto&& dots, auto&& axpys) {
            std::vector<std::vector<float>> got(nq, std::vector<float>(static_cast<size_t>(rows))), want = got;
            std::vector<std::vector<float>> yg(y0.begin(), y0.begin() + nq), yw = yg;
            const float* qs[kMaxQueryRows];
            const float* ps[kMaxQueryRows];
            float* outs[kMaxQueryRows];
            float* ys[kMaxQueryRows];
            for (int i = 0; i < nq; ++i) {
              qs[i] = q[i].data();
              ps[i] = p[i].data();
              outs[i] = got[i].data();
              ys[i] = yg[i].data();
            }
            dots(qs, nq, outs);
            axpys(ps, nq, ys);
            for (int i = 0; i < nq; ++i) {
              float* one_out[1] = {want[i].data()};
              float* one_y[1] = {yw[i].data()};
              dots(&qs[i], 1, one_out);
              axpys(&ps[i], 1, one_y);
              expect_identical(want[i], got[i], std::string(storage) + " scores, query " + std::to_string(i) + " " + what);
              expect_identical(yw[i], yg[i], std::string(storage) + " values, query " + std::to_string(i) + " " + what);
            }
            // And one query through the one-query API.
            std::vector<float> single(static_cast<size_t>(rows));
            if (std::string(storage) == "f32") {
              dot_rows(q[0].data(), x.data(), rows, n, single.data());
              expect_identical(single, want[0], "f32 one-query API " + what);
            }
          };
          check("f32", [&](const float* const* qs, int k, float* const* o) { dot_rows(qs, k, x.data(), rows, n, o); },
                [&](const float* const* ps, int k, float* const* y) { axpy_rows(ps, k, x.data(), rows, n, y); });
          check("f16", [&](const float* const* qs, int k, float* const* o) { dot_rows(qs, k, h.data(), rows, n, o); },
                [&](const float* const* ps, int k, float* const* y) { axpy_rows(ps, k, h.data(), rows, n, y); });
          check("q8",
                [&](const float* const* qs, int k, float* const* o) { dot_rows(qs, k, c.data(), scales.data(), rows, n, o); },
                [&](const float* const* ps, int k, float* const* y) { axpy_rows(ps, k, c.data(), scales.data(), rows, n, y); });
        }
      }
    }
  }
}

}  // namespace
}  // namespace phinfer::kernels
