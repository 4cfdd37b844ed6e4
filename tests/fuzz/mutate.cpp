#include "fuzz/mutate.h"

#include <cmath>
#include <limits>

namespace phinfer::fuzz {

using nlohmann::json;

json edge_value(Rng& rng) {
  switch (rng() % 16) {
    case 0: return nullptr;
    case 1: return static_cast<int64_t>(rng() % 20) - 5;
    case 2: return static_cast<int64_t>(rng());  // may be negative
    case 3: return rng();                         // up to 2^64 - 1
    case 4: return static_cast<int64_t>(1) << (rng() % 63);
    case 5: return -(static_cast<int64_t>(1) << (rng() % 63));
    case 6: return std::ldexp(static_cast<double>(rng() % 1000) / 100.0, static_cast<int>(rng() % 80) - 40);
    case 7: return rng() % 2 ? std::numeric_limits<double>::max() : -0.0;
    case 8: return rng() % 2 == 0;
    case 9: return "";
    case 10: return std::string(1 + rng() % 8, static_cast<char>('a' + rng() % 26));
    case 11: return std::string("\xff\xfe\xc3");  // ill-formed UTF-8
    case 12: return std::string("\xe2\x96\x81\xf0\x9f\x98\x80");  // ▁ and an emoji
    case 13: return json::array();
    case 14: return json::object();
    default: return 2147483647 + static_cast<int64_t>(rng() % 3);
  }
}

json random_value(Rng& rng, const std::vector<std::string>& words, int depth) {
  const uint64_t kinds = depth > 0 ? 5 : 3;
  switch (rng() % kinds) {
    case 0:
    case 1: return edge_value(rng);
    case 2: return words.empty() ? json("x") : json(words[pick(rng, words.size())]);
    case 3: {
      json a = json::array();
      for (size_t n = pick(rng, 5); n > 0; --n) a.push_back(random_value(rng, words, depth - 1));
      return a;
    }
    default: {
      json o = json::object();
      for (size_t n = pick(rng, 5); n > 0; --n)
        o[words.empty() ? "k" : words[pick(rng, words.size())]] = random_value(rng, words, depth - 1);
      return o;
    }
  }
}

namespace {

// Every node of `doc` as a JSON pointer (the root excluded), in document order.
void collect(const json& node, const json::json_pointer& at, std::vector<json::json_pointer>& out) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      const json::json_pointer child = at / it.key();  // not out.back(): the recursion grows `out`
      out.push_back(child);
      collect(it.value(), child, out);
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) {
      const json::json_pointer child = at / i;
      out.push_back(child);
      collect(node[i], child, out);
    }
  }
}

}  // namespace

void mutate_json(json& doc, Rng& rng, const std::vector<std::string>& words) {
  for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
    std::vector<json::json_pointer> nodes;
    collect(doc, json::json_pointer(), nodes);
    if (nodes.empty()) {
      doc = random_value(rng, words);
      continue;
    }
    const json::json_pointer& at = nodes[pick(rng, nodes.size())];
    json& node = doc[at];
    json& parent = doc[at.parent_pointer()];
    switch (rng() % 9) {
      case 0:
      case 1: node = random_value(rng, words); break;
      case 2: node = doc[nodes[pick(rng, nodes.size())]]; break;  // graft (a copy, so no aliasing)
      case 3:
        if (parent.is_object()) parent.erase(at.back());
        else parent.erase(static_cast<size_t>(std::stoull(at.back())));
        break;
      case 4:
        if (parent.is_array()) parent.push_back(json(node));
        else node = json::array({node, node});
        break;
      case 5:
        if (node.is_object() && !words.empty()) node[words[pick(rng, words.size())]] = random_value(rng, words);
        else if (node.is_array()) node.push_back(random_value(rng, words));
        else node = edge_value(rng);
        break;
      case 6:
        if (parent.is_array() && parent.size() > 1) std::swap(parent[pick(rng, parent.size())], node);
        else node = edge_value(rng);
        break;
      case 7:
        if (node.is_string()) node = node.get<std::string>().size();
        else if (node.is_number()) node = node.dump();
        else node = nullptr;
        break;
      default:
        if (node.is_string() && !words.empty()) node = words[pick(rng, words.size())];
        else node = edge_value(rng);
        break;
    }
  }
}

void mutate_bytes(std::string& bytes, Rng& rng, const std::vector<std::string>& fragments) {
  for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) {
    const size_t at = pick(rng, bytes.size() + 1);
    switch (rng() % 7) {
      case 0:
        for (int i = 1 + static_cast<int>(rng() % 8); i > 0 && !bytes.empty(); --i)
          bytes[pick(rng, bytes.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        for (int i = 1 + static_cast<int>(rng() % 4); i > 0 && !bytes.empty(); --i)
          bytes[pick(rng, bytes.size())] = static_cast<char>(rng());
        break;
      case 2:
      case 3:
        if (!fragments.empty()) {
          const size_t del = one_in(rng, 2) ? pick(rng, std::min<size_t>(12, bytes.size() - at) + 1) : 0;
          bytes.replace(at, del, fragments[pick(rng, fragments.size())]);
        }
        break;
      case 4: bytes.erase(at, pick(rng, std::min<size_t>(64, bytes.size() - at) + 1)); break;
      case 5: {
        const size_t from = pick(rng, bytes.size() + 1);
        bytes.insert(at, bytes.substr(from, pick(rng, 64)));
        break;
      }
      default: bytes.resize(pick(rng, bytes.size() + 1)); break;
    }
  }
}

std::string brief(const std::string& s, size_t limit) {
  return s.size() <= limit ? s : s.substr(0, limit) + "...(" + std::to_string(s.size()) + " bytes)";
}

}  // namespace phinfer::fuzz
