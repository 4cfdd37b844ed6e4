#pragma once
// Golden models converted to a weight format once per test process (plain rounding: quick).
#include <filesystem>
#include <map>
#include <string>

#include "phinfer/convert.h"
#include "test_util.h"

namespace phinfer::test {

inline std::filesystem::path converted_model(const std::string& model, const std::string& format) {
  static std::map<std::string, std::filesystem::path> done;
  const std::string key = model + "/" + format;
  if (done.count(key)) return done[key];
  auto out = temp_dir("converted-" + model + "-" + format) / "model.phi";
  ConvertOptions o;
  o.weight_format = format;
  o.plain_rounding = true;
  convert(shared_path("models/" + model), out, o);
  return done[key] = out;
}

}  // namespace phinfer::test
