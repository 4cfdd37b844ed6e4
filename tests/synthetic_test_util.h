#pragma once
// Helpers shared by the synthetic checkpoint tests (synthetic_test.cpp, synthetic_phi4_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace phinfer::test {

inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A random model's next-token distribution is far from uniform (like a trained model's): the top
// token at least 100 times the uniform probability, the entropy 2 nats below the uniform one.
// Every logit must be finite. `name` labels the printed numbers.
inline void expect_peaked(const std::vector<float>& logits, const char* name) {
  ASSERT_FALSE(logits.empty());
  float mx = -INFINITY;
  for (float x : logits) {
    ASSERT_TRUE(std::isfinite(x));
    mx = std::max(mx, x);
  }
  double z = 0, entropy = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x - mx));
  for (float x : logits) {
    const double p = std::exp(static_cast<double>(x - mx)) / z;
    if (p > 0) entropy -= p * std::log(p);
  }
  const double n = static_cast<double>(logits.size());
  const double max_p = 1.0 / z, uniform = 1.0 / n;
  std::printf("[ synthetic ] %s: max p %.4f (uniform %.6f), entropy %.2f nats (uniform %.2f)\n", name, max_p, uniform,
              entropy, std::log(n));
  EXPECT_GT(max_p, 100 * uniform);
  EXPECT_LT(entropy, std::log(n) - 2.0);
}

}  // namespace phinfer::test
