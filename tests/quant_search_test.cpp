// The quantization search (kernels/quant_search.inl) gives the same bytes on its portable and AVX2
// paths, and the same bytes as the scalar search it replaced (which was ~7x slower): the CRCs below
// were produced by that search (commit 0477d0f) on the matrices made here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "format/native_file.h"
#include "kernels/isa.h"
#include "kernels/quant.h"

namespace phinfer::kernels {
namespace {

struct Case {
  WeightFormat format;
  int group_size;
  bool symmetric;
  int64_t rows, cols;
  uint32_t crc;  // of the packed bytes from the previous search
};

// Heavy-tailed weights (Student t, 4 degrees of freedom) with zeros sprinkled in.
std::vector<float> weights(int64_t rows, int64_t cols) {
  std::mt19937 rng(static_cast<uint32_t>(rows * 1000 + cols));
  std::student_t_distribution<float> d(4.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& x : w) x = 0.02f * d(rng);
  for (int64_t i = 0; i < cols; i += 17) w[static_cast<size_t>(i)] = 0;
  return w;
}

uint32_t packed_crc(const std::vector<float>& w, const Case& c, QuantMethod method = QuantMethod::Search) {
  QuantParams p;
  p.format = c.format;
  p.group_size = c.group_size;
  p.symmetric = c.symmetric;
  p.method = method;
  const QuantizedMatrix q = quantize(w.data(), c.rows, c.cols, p, nullptr);
  return format::crc32({q.data.data(), q.data.size()});
}

const Case kPreviousSearch[] = {
    {WeightFormat::Int4, 128, true, 37, 300, 0x631eab55u},  {WeightFormat::Int4, 128, false, 37, 300, 0x15a4a640u},
    {WeightFormat::Int8, -1, true, 21, 700, 0xe97db1d8u},   {WeightFormat::Int8, -1, false, 21, 700, 0xbcf75f40u},
    {WeightFormat::Int4, 32, true, 16, 96, 0xd2386affu},    {WeightFormat::Int4, -1, false, 9, 3072, 0xc7e73993u},
    {WeightFormat::Int8, 64, true, 18, 200, 0x2c7c1b48u},   {WeightFormat::Int4, 48, false, 20, 100, 0x28c07031u},
};

struct IsaGuard {
  ~IsaGuard() { reset_isa_for_testing(); }
};

TEST(QuantSearch, SameBytesAsThePreviousSearchOnEveryPath) {
  IsaGuard guard;
  for (Isa isa : supported_isas()) {
    set_isa_for_testing(isa);
    for (const Case& c : kPreviousSearch)
      EXPECT_EQ(packed_crc(weights(c.rows, c.cols), c), c.crc)
          << isa_name(isa) << ": " << c.rows << "x" << c.cols << " group " << c.group_size
          << (c.symmetric ? " sym" : " asym") << (c.format == WeightFormat::Int4 ? " int4" : " int8");
  }
}

TEST(QuantSearch, PortableAndSimdPathsAgreeOnOddShapesAndEdgeValues) {
  IsaGuard guard;
  std::mt19937 rng(11);
  for (int trial = 0; trial < 24; ++trial) {
    Case c{trial % 2 ? WeightFormat::Int4 : WeightFormat::Int8, std::vector<int>{-1, 7, 32, 100, 128}[trial % 5],
           trial % 3 != 0, 1 + trial % 19, 5 + 37 * trial % 411, 0};
    std::vector<float> w = weights(c.rows, c.cols);
    // Edge values: a constant row, a row of one outlier, tiny and huge magnitudes.
    std::fill_n(w.begin(), c.cols, 0.5f);
    if (c.rows > 1) w[static_cast<size_t>(c.cols + trial % c.cols)] = 3.0e4f;
    if (c.rows > 2)
      for (int64_t i = 0; i < c.cols; ++i) w[static_cast<size_t>(2 * c.cols + i)] *= (trial % 4 == 0 ? 1e-6f : 1e3f);
    for (QuantMethod m : {QuantMethod::Search, QuantMethod::MinMax}) {
      set_isa_for_testing(Isa::Scalar);
      const uint32_t portable = packed_crc(w, c, m);
      for (Isa isa : supported_isas()) {
        set_isa_for_testing(isa);
        ASSERT_EQ(packed_crc(w, c, m), portable) << isa_name(isa) << " trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace phinfer::kernels
