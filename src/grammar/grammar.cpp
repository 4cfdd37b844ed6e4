#include "grammar/grammar_impl.h"

#include <nlohmann/json.hpp>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "phinfer/error.h"

namespace phinfer {

namespace {
Grammar make(std::string gbnf, const std::string& source) {
  auto impl = std::make_shared<Grammar::Impl>();
  impl->rules = std::make_shared<const grammar::Rules>(grammar::parse_gbnf(gbnf, source));
  impl->gbnf = std::move(gbnf);
  Grammar g;
  g.impl = std::move(impl);
  return g;
}
}  // namespace

Grammar Grammar::from_gbnf(std::string_view text, const std::string& source) { return make(std::string(text), source); }

Grammar Grammar::from_json_schema(std::string_view schema, const std::string& source) {
  if (schema.size() > grammar::kMaxSchemaBytes)
    throw Error(source + ": larger than " + std::to_string(grammar::kMaxSchemaBytes) + " bytes");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(schema);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON: " + e.what());
  }
  try {
    return make(grammar::json_schema_to_gbnf(j), source + " (as a grammar)");
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
}

Grammar Grammar::any_json_object() {
  static const Grammar any = make(grammar::any_json_object_gbnf(), "any JSON object");
  return any;
}

const std::string& Grammar::gbnf() const { return impl->gbnf; }

std::shared_ptr<grammar::MaskCache> Grammar::Impl::cache_for(const grammar::Vocabulary& vocab) const {
  std::lock_guard<std::mutex> lock(mu);
  auto& c = caches[vocab.serial()];
  if (!c) c = std::make_shared<grammar::MaskCache>();
  return c;
}

}  // namespace phinfer
