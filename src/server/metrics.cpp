#include "server/metrics.h"

#include <cstdio>

namespace phinfer::server {

namespace {
std::string number(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

std::string Metrics::render() const {
  std::string out;
  out += "# HELP phinfer_requests_total HTTP requests answered, by endpoint and status\n"
         "# TYPE phinfer_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, n] : requests_)
      out += "phinfer_requests_total{endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"} " +
             std::to_string(n) + "\n";
  }
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(v) + "\n";
  };
  counter("phinfer_prompt_tokens_total", "Prompt tokens of finished generations", prompt_tokens.load());
  counter("phinfer_generated_tokens_total", "Tokens generated", generated_tokens.load());
  counter("phinfer_cancelled_total", "Generations stopped because the client went away or the server stopped",
          cancelled.load());
  out += "# HELP phinfer_http_in_flight Generation requests being answered\n# TYPE phinfer_http_in_flight gauge\n"
         "phinfer_http_in_flight " + std::to_string(in_flight.load()) + "\n";
  ttft.render(out, "phinfer_time_to_first_token_seconds", "Time from the request to its first generated token");
  per_token.render(out, "phinfer_time_per_output_token_seconds", "Time between consecutive generated tokens");
  return out;
}

}  // namespace phinfer::server
