#include "grammar/matcher.h"

#include <algorithm>

#include "phinfer/error.h"

namespace phinfer::grammar {

int32_t Stacks::push(uint32_t pos, int32_t parent, uint32_t sub) {
  const uint32_t depth = parent < 0 ? 1 : nodes_[static_cast<size_t>(parent)].depth + 1;
  if (depth > kMaxStackDepth)
    throw Error("grammar: the text nests rules more than " + std::to_string(kMaxStackDepth) + " deep");
  nodes_.push_back({pos, parent, depth, sub});
  return static_cast<int32_t>(nodes_.size() - 1);
}

bool Stacks::same(int32_t a, int32_t b) const {
  while (a != b) {
    if (a < 0 || b < 0) return false;
    const Node& x = nodes_[static_cast<size_t>(a)];
    const Node& y = nodes_[static_cast<size_t>(b)];
    if (x.pos != y.pos || x.depth != y.depth || x.sub != y.sub) return false;
    a = x.parent;
    b = y.parent;
  }
  return true;
}

void Stacks::add_top(int32_t node, std::vector<int32_t>& out, size_t from) {
  const Node& n = nodes_[static_cast<size_t>(node)];
  for (size_t i = from; i < out.size(); ++i) {
    const Node& o = nodes_[static_cast<size_t>(out[i])];
    // Most tops differ in their position; equal ones usually share their parent node.
    if (o.pos != n.pos || o.depth != n.depth || o.sub != n.sub) continue;
    if (o.parent == n.parent || same(o.parent, n.parent)) {
      nodes_.pop_back();  // the node just pushed for this top (always the newest)
      return;
    }
  }
  if (out.size() - from >= kMaxStacks)
    throw Error("grammar is too ambiguous: more than " + std::to_string(kMaxStacks) +
                " ways to parse the text so far");
  out.push_back(node);
}

bool Stacks::expand(uint32_t start_pos, int32_t start_parent, std::vector<int32_t>& out, size_t from) {
  const Rules& g = *rules_;
  bool complete = false;
  size_t steps = 0;
  work_.clear();
  work_.emplace_back(start_pos, start_parent);
  while (!work_.empty()) {
    auto [pos, parent] = work_.back();
    work_.pop_back();
    for (;;) {
      ++steps_;
      if (++steps > kMaxExpansionWork)
        throw Error("grammar is too ambiguous: expanding its rules at one byte took more than " +
                    std::to_string(kMaxExpansionWork) + " steps");
      const Element e = g.elements[pos];
      if (e.kind == ElementKind::End) {
        if (parent < 0) {
          complete = true;
          break;
        }
        pos = nodes_[static_cast<size_t>(parent)].pos;
        parent = nodes_[static_cast<size_t>(parent)].parent;
        continue;
      }
      if (e.kind == ElementKind::Bytes || e.kind == ElementKind::Char) {
        add_top(push(pos, parent), out, from);
        break;
      }
      // A rule reference: continue after it once the rule ends (nothing to remember when the
      // reference ends its alternative), and try each of the rule's alternatives.
      const int32_t cont = g.elements[pos + 1].kind == ElementKind::End ? parent : push(pos + 1, parent);
      for (uint32_t a = g.rule_first_alt[e.value + 1]; a-- > g.rule_first_alt[e.value];)
        work_.emplace_back(g.alternatives[a], cont);
      break;
    }
  }
  return complete;
}

bool Stacks::advance(const std::vector<int32_t>& in, size_t begin, size_t end, uint8_t byte,
                     std::vector<int32_t>& out, size_t from) {
  const Rules& g = *rules_;
  bool complete = false;
  steps_ += end - begin;
  for (size_t i = begin; i < end; ++i) {
    const Node n = nodes_[static_cast<size_t>(in[i])];
    const Element e = g.elements[n.pos];
    if (e.kind == ElementKind::Bytes) {
      if (contains(g.byte_sets[e.value], byte)) complete |= expand(n.pos + 1, n.parent, out, from);
      continue;
    }
    const uint32_t next = step_char(g.char_classes[e.value], n.sub, byte);
    if (next == kCharDone) complete |= expand(n.pos + 1, n.parent, out, from);
    else if (next != kCharFail) add_top(push(n.pos, n.parent, next), out, from);
  }
  return complete;
}

bool Stacks::start(std::vector<int32_t>& out) {
  const Rules& g = *rules_;
  bool complete = false;
  for (uint32_t a = g.rule_first_alt[g.root]; a < g.rule_first_alt[g.root + 1]; ++a)
    complete |= expand(g.alternatives[a], -1, out, 0);
  return complete;
}

Matcher::Matcher(std::shared_ptr<const Rules> rules) : rules_(std::move(rules)), stacks_(*rules_) {
  complete_ = stacks_.start(tops_);
}

bool Matcher::accept(std::string_view bytes) {
  if (bytes.empty()) return true;
  const size_t mark = stacks_.mark();
  std::vector<int32_t> cur = tops_;
  bool complete = false;
  for (unsigned char b : bytes) {
    scratch_.clear();
    complete = stacks_.advance(cur, 0, cur.size(), b, scratch_, 0);
    if (scratch_.empty() && !complete) {
      stacks_.rollback(mark);
      return false;
    }
    cur.swap(scratch_);
  }
  // A parse that finished before the last byte is gone: only `complete` at the end counts.
  tops_.swap(cur);
  complete_ = complete;
  return true;
}

std::string Matcher::key() const {
  std::vector<std::vector<uint32_t>> stacks;
  for (int32_t t : tops_) {
    std::vector<uint32_t> chain;
    for (int32_t n = t; n >= 0; n = stacks_.parent(n)) {
      chain.push_back(stacks_.pos(n));
      chain.push_back(stacks_.sub(n));
    }
    stacks.push_back(std::move(chain));
  }
  std::sort(stacks.begin(), stacks.end());
  std::string key(1, complete_ ? 'c' : 'o');
  for (const auto& chain : stacks) {
    key.append(reinterpret_cast<const char*>(chain.data()), chain.size() * sizeof(uint32_t));
    key.append(4, '\xFF');
  }
  return key;
}

}  // namespace phinfer::grammar
