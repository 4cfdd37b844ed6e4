#pragma once
// Mutation tools the harnesses share: byte-level edits of any text or binary, and structural edits
// of a JSON document (replace, erase, retype, duplicate, graft one subtree in place of another), so
// mutated inputs keep getting past the JSON parser into the checks behind it.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz.h"

namespace phinfer::fuzz {

inline size_t pick(Rng& rng, size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; }
inline bool one_in(Rng& rng, uint64_t n) { return rng() % n == 0; }

// Numbers and strings that sit on parsers' edges: zero, negatives, 2^31, 2^32, 2^63, 2^64 - 1,
// NaN-like doubles, empty and huge lengths, ill-formed UTF-8.
nlohmann::json edge_value(Rng& rng);

// A random JSON value built from edge values and `words` (target-specific keys and type names, so
// grafted objects look like the real components), nested at most `depth` deep.
nlohmann::json random_value(Rng& rng, const std::vector<std::string>& words, int depth = 2);

// 1-4 structural edits anywhere in `doc` (a copy of a seed): replace a node with a random value or
// with another node of the same document, erase it, duplicate an array element, add a key from
// `words`, swap two array elements, or turn a string into a number.
void mutate_json(nlohmann::json& doc, Rng& rng, const std::vector<std::string>& words);

// 1-3 byte-level edits: bit flips, byte overwrites, inserted `fragments` or dictionary bytes,
// deleted / duplicated ranges, truncation.
void mutate_bytes(std::string& bytes, Rng& rng, const std::vector<std::string>& fragments);

// Shrinks a string to at most `limit` bytes (keeps inputs and error messages bounded in logs).
std::string brief(const std::string& s, size_t limit = 200);

}  // namespace phinfer::fuzz
