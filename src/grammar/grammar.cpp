#include "grammar/grammar_impl.h"

#include <list>
#include <mutex>

#include <nlohmann/json.hpp>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "phinfer/error.h"

namespace phinfer {

namespace {

// The grammars made most recently, by their GBNF text: a server that gets the same response
// format or tools with every request keeps one grammar, and with it the token masks and class
// indexes it has computed. Few, since each may hold up to its mask cache's budget.
constexpr size_t kRecentGrammars = 8;

struct RecentGrammars {
  std::mutex mu;
  std::list<std::shared_ptr<const Grammar::Impl>> newest_first;
};

RecentGrammars& recent() {
  static RecentGrammars r;
  return r;
}

Grammar make(std::string gbnf, const std::string& source) {
  Grammar g;
  RecentGrammars& r = recent();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (auto it = r.newest_first.begin(); it != r.newest_first.end(); ++it)
      if ((*it)->gbnf == gbnf) {
        r.newest_first.splice(r.newest_first.begin(), r.newest_first, it);
        g.impl = *it;
        return g;
      }
  }
  auto impl = std::make_shared<Grammar::Impl>();
  impl->rules = std::make_shared<const grammar::Rules>(grammar::parse_gbnf(gbnf, source));
  impl->gbnf = std::move(gbnf);
  g.impl = impl;
  std::lock_guard<std::mutex> lock(r.mu);
  r.newest_first.push_front(std::move(impl));
  if (r.newest_first.size() > kRecentGrammars) r.newest_first.pop_back();
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
