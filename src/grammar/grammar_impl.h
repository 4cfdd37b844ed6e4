#pragma once
// What a phinfer::Grammar holds: the compiled rules and the token-mask caches of each vocabulary
// it was used with.
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "grammar/rules.h"
#include "grammar/token_mask.h"
#include "grammar/vocabulary.h"
#include "phinfer/grammar.h"

namespace phinfer {

struct Grammar::Impl {
  std::shared_ptr<const grammar::Rules> rules;
  std::string gbnf;
  std::shared_ptr<grammar::MaskCache> cache_for(const grammar::Vocabulary& vocab) const;

 private:
  mutable std::mutex mu;
  mutable std::map<uint64_t, std::shared_ptr<grammar::MaskCache>> caches;  // by vocabulary serial
};

}  // namespace phinfer
