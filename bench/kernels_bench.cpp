// Kernel benchmarks (Google Benchmark): decode (1 token), batched decode (8 and 16 tokens: one
// row each from that many sequences) and prefill (512 tokens) matmuls on the Phi-3-mini shapes for Int4 g128 sym/asym, Int8 per-channel and F16, plus the machine probes.
//   kernels_bench [--benchmark_filter=...]     PHINFER_ISA=... forces a path, PHINFER_THREADS=n
// Counters: GB/s = weight bytes streamed per second, GOP/s = 2 * rows * cols * tokens per second.
// Decode, batched or not, cycles through enough copies of the matrix (>= 1 GiB in all) that every
// call reads its weights from DRAM, as a real decode step does; prefill reuses one copy.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "kernels/isa.h"
#include "kernels/matrix.h"
#include "kernels/probe.h"
#include "kernels/quant.h"
#include "kernels/thread_pool.h"

namespace pk = phinfer::kernels;

namespace {

struct Shape {
  int64_t rows, cols;
  const char* name;
};
const Shape kShapes[] = {
    {3072, 3072, "o_proj"}, {9216, 3072, "qkv_proj"}, {16384, 3072, "gate_up"}, {3072, 8192, "down"}, {32064, 3072, "lm_head"}};

struct Format {
  pk::WeightFormat format;
  int group;
  bool sym;
  const char* name;
};
const Format kFormats[] = {{pk::WeightFormat::Int4, 128, true, "Q4g128sym"},
                           {pk::WeightFormat::Int4, 128, false, "Q4g128asym"},
                           {pk::WeightFormat::Int8, -1, true, "Q8chan"},
                           {pk::WeightFormat::F16, 0, true, "F16"}};

pk::ThreadPool& pool() {
  static pk::ThreadPool p([] {
    const char* t = std::getenv("PHINFER_THREADS");
    return t ? std::atoi(t) : 0;
  }());
  return p;
}

// Copies of one matrix: random codes and small positive scales (values do not change the speed).
struct Weights {
  std::vector<pk::AlignedBytes> copies;
  std::vector<pk::WeightMatrix> views;
  size_t bytes = 0;
};

std::unique_ptr<Weights> make_weights(const Shape& s, const Format& f, size_t min_total) {
  auto w = std::make_unique<Weights>();
  pk::WeightMatrix m;
  m.format = f.format;
  m.rows = s.rows;
  m.cols = s.cols;
  m.group_size = f.group;
  m.symmetric = f.sym;
  w->bytes = m.bytes();
  const size_t n = std::max<size_t>(1, (min_total + w->bytes - 1) / w->bytes);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < n; ++i) {
    pk::AlignedBytes b(w->bytes);
    uint64_t* p = reinterpret_cast<uint64_t*>(b.data());
    for (size_t k = 0; k < w->bytes / 8; ++k) p[k] = rng();
    if (pk::is_quantized(f.format)) {
      const pk::QuantLayout L = pk::QuantLayout::of(m);
      for (int64_t t = 0; t < L.n_tiles; ++t) {
        uint16_t* sc = reinterpret_cast<uint16_t*>(b.data() + t * L.tile_bytes + L.quant_bytes);
        const int64_t n_half = (L.tile_bytes - L.quant_bytes) / 2;
        for (int64_t k = 0; k < n_half; ++k) sc[k] = phinfer::f32_to_f16(0.01f + 0.001f * static_cast<float>(k % 7));
      }
    } else {
      uint16_t* h = reinterpret_cast<uint16_t*>(b.data());
      for (size_t k = 0; k < w->bytes / 2; ++k) h[k] = phinfer::f32_to_f16(0.02f * static_cast<float>(static_cast<int>(k % 201) - 100) / 100.0f);
    }
    m.data = b.data();
    w->views.push_back(m);
    w->copies.push_back(std::move(b));
  }
  return w;
}

void BM_Matmul(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  const Format& f = kFormats[state.range(1)];
  const int64_t tokens = state.range(2);
  const bool decode = tokens <= 16;
  auto w = make_weights(s, f, decode ? (size_t{1} << 30) : 0);
  std::vector<float> x(static_cast<size_t>(tokens * s.cols)), y(static_cast<size_t>(tokens * s.rows));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(rng);
  size_t i = 0;
  for (auto _ : state) {
    pk::matmul(w->views[i], x.data(), tokens, y.data(), s.rows, pool());
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % w->views.size();
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w->bytes) * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GOP/s"] = benchmark::Counter(2.0 * s.rows * s.cols * tokens * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["bits/w"] = 8.0 * static_cast<double>(w->bytes) / (static_cast<double>(s.rows) * s.cols);
  state.SetLabel(std::string(f.name) + " " + s.name + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                 " t=" + std::to_string(tokens));
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  for (int64_t t : {1, 8, 16, 512})
    for (int f = 0; f < 4; ++f)
      for (int s = 0; s < 5; ++s) b->Args({s, f, t});
}
BENCHMARK(BM_Matmul)->Apply(MatmulArgs)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(0.5);

void BM_ReadBandwidth(benchmark::State& state) {
  double gbs = 0;
  for (auto _ : state) gbs = pk::measure_read_bandwidth_gbs(pool());
  state.counters["GB/s"] = gbs;
}
BENCHMARK(BM_ReadBandwidth)->Iterations(3)->Unit(benchmark::kMillisecond);

void BM_Int8Peak(benchmark::State& state) {
  double gops = 0;
  for (auto _ : state) gops = pk::measure_int8_peak_gops(pool());
  state.counters["GOP/s"] = gops;
}
BENCHMARK(BM_Int8Peak)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("phinfer_isa", std::string(pk::active_isa_name()));
  benchmark::AddCustomContext("phinfer_threads", std::to_string(pool().size()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
