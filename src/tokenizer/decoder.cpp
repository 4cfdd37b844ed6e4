#include "tokenizer/decoder.h"

#include <cstdint>
#include <optional>

#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"
#include "tokenizer/utf8.h"

namespace phinfer::tok {

void Emit::operator()(const Fragment& f) const { stream_->feed(next_, f); }

void DecodeStream::feed(size_t stage, const Fragment& f) {
  if (stage == stages_.size())
    out_->append(f.text);
  else
    stages_[stage]->push(f, Emit(*this, stage + 1));
}

void DecodeStream::push_token(std::string_view token, std::string& out) {
  out_ = &out;
  feed(0, {token, true, true});
  out_ = nullptr;
}

void DecodeStream::finish(std::string& out) {
  out_ = &out;
  // In order, so what an early stage releases still flows through the later ones.
  for (size_t i = 0; i < stages_.size(); ++i) stages_[i]->finish(Emit(*this, i + 1));
  out_ = nullptr;
  for (auto& s : stages_) s = s->clone();
}

namespace {

// Base for components that HF applies to each whole token: fragments of a fused token are
// collected until the token is complete.
class WholeTokenStage : public DecodeStage {
 public:
  void push(const Fragment& f, const Emit& out) final {
    if (f.starts_token && f.ends_token && !open_) return on_token(f.text, out);
    if (f.starts_token && open_) flush_open(out);
    buffer_.append(f.text);
    open_ = true;
    if (f.ends_token) flush_open(out);
  }
  void finish(const Emit& out) final {
    if (open_) flush_open(out);
    on_finish(out);
  }

 protected:
  virtual void on_token(std::string_view token, const Emit& out) = 0;
  virtual void on_finish(const Emit& out) {}

 private:
  void flush_open(const Emit& out) {
    std::string token = std::move(buffer_);
    buffer_.clear();
    open_ = false;
    on_token(token, out);
  }
  std::string buffer_;
  bool open_ = false;
};

class ReplaceStage final : public WholeTokenStage {
 public:
  ReplaceStage(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::unique_ptr<DecodeStage> clone() const override {
    return std::make_unique<ReplaceStage>(pattern_, content_);
  }

 protected:
  void on_token(std::string_view token, const Emit& out) override {
    std::string replaced = pattern_.replace_all(token, content_);
    out({replaced, true, true});
  }
  void raw(std::string& bytes, bool, bool&) const override { bytes = pattern_.replace_all(bytes, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

// <0xNN> tokens are collected into a byte run; when the run ends, it becomes its UTF-8 text, or,
// if it is not valid UTF-8, one U+FFFD per byte (HF tokenizers' rule). The run stays pending until
// a non-byte token (or the end) arrives, since a later byte could still make it invalid.
class ByteFallbackStage final : public WholeTokenStage {
 public:
  std::unique_ptr<DecodeStage> clone() const override {
    return std::make_unique<ByteFallbackStage>();
  }

 protected:
  void on_token(std::string_view token, const Emit& out) override {
    if (auto b = parse_byte(token)) {
      bytes_ += static_cast<char>(*b);
      return;
    }
    flush_bytes(out);
    out({token, true, true});
  }
  void on_finish(const Emit& out) override { flush_bytes(out); }

 public:
  void raw(std::string& bytes, bool, bool&) const override {
    if (auto b = parse_byte(bytes)) bytes.assign(1, static_cast<char>(*b));
  }

 private:
  static std::optional<unsigned char> parse_byte(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
  }
  void flush_bytes(const Emit& out) {
    if (bytes_.empty()) return;
    if (to_valid_utf8(bytes_) == bytes_) {
      out({bytes_, true, true});
    } else {
      for (size_t i = 0; i < bytes_.size(); ++i) out({kReplacementChar, true, true});
    }
    bytes_.clear();
  }
  std::string bytes_;
};

// All tokens become one token.
class FuseStage final : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> clone() const override { return std::make_unique<FuseStage>(); }
  void push(const Fragment& f, const Emit& out) override {
    out({f.text, first_, false});
    first_ = false;
  }
  void raw(std::string&, bool, bool& fused) const override { fused = true; }

 private:
  bool first_ = true;
};

// Removes up to `start` copies of `content` from the beginning of each token and up to `stop`
// from its end. Trailing copies are held back until it is known whether the token ends there.
class StripStage final : public DecodeStage {
 public:
  StripStage(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  std::unique_ptr<DecodeStage> clone() const override {
    return std::make_unique<StripStage>(content_, start_, stop_);
  }
  void push(const Fragment& f, const Emit& out) override {
    if (f.starts_token) {
      held_.clear();
      held_count_ = 0;
      left_to_strip_ = start_;
    }
    std::string text;
    std::string_view s = f.text;
    for (size_t i = 0; i < s.size();) {
      std::string_view ch = s.substr(i, char_length(static_cast<unsigned char>(s[i])));
      i += ch.size();
      const bool is_content = ch == content_;
      if (is_content && left_to_strip_ > 0) {
        --left_to_strip_;
        continue;
      }
      left_to_strip_ = 0;
      if (is_content && stop_ > 0) {
        held_.append(ch);
        if (++held_count_ > stop_) {  // more than stop copies: the oldest is kept for sure
          text.append(content_);
          held_.erase(0, content_.size());
          --held_count_;
        }
        continue;
      }
      text.append(held_);
      held_.clear();
      held_count_ = 0;
      text.append(ch);
    }
    out({text, f.starts_token, f.ends_token});
    if (f.ends_token) {
      held_.clear();
      held_count_ = 0;
    }
  }
  void raw(std::string& bytes, bool at_start, bool& fused) const override {
    if (fused && !at_start) return;
    for (size_t n = 0; n < start_ && bytes.starts_with(content_); ++n) bytes.erase(0, content_.size());
    // The end of a fused token is the end of the text, unknown here: only unfused tokens lose it.
    for (size_t n = 0; !fused && n < stop_ && bytes.ends_with(content_); ++n) bytes.resize(bytes.size() - content_.size());
  }

 private:
  std::string content_;  // one character
  size_t start_, stop_;
  size_t left_to_strip_ = 0;
  std::string held_;
  size_t held_count_ = 0;
};

// GPT-2 byte level: characters back to bytes, then UTF-8 decoded (invalid sequences -> U+FFFD,
// incomplete ones held back). A token with a character outside the table (an added token such as
// "<|end|>" is not affected, but a non-ASCII one would be) is taken as raw UTF-8, as HF does.
class ByteLevelStage final : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> clone() const override {
    return std::make_unique<ByteLevelStage>();
  }
  void push(const Fragment& f, const Emit& out) override {
    const ByteLevelTable& table = ByteLevelTable::get();
    std::string bytes;
    bool mapped = true;
    for (size_t i = 0; i < f.text.size() && mapped;) {
      auto b = table.byte_for(decode_at(f.text, i));
      i += char_length(static_cast<unsigned char>(f.text[i]));
      if (b) bytes += static_cast<char>(*b);
      else mapped = false;
    }
    std::string text;
    utf8_.feed(mapped ? std::string_view(bytes) : f.text, text);
    emit(text, out);
  }
  void finish(const Emit& out) override {
    std::string text;
    utf8_.finish(text);
    if (!text.empty()) emit(text, out);
  }
  void raw(std::string& token, bool, bool&) const override {
    const ByteLevelTable& table = ByteLevelTable::get();
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
      auto b = table.byte_for(decode_at(token, i));
      if (!b) return;  // not a byte-level token: its text as it is
      i += char_length(static_cast<unsigned char>(token[i]));
      bytes += static_cast<char>(*b);
    }
    token = std::move(bytes);
  }

 private:
  void emit(const std::string& text, const Emit& out) {
    out({text, first_, false});
    first_ = false;
  }
  LossyUtf8Decoder utf8_;
  bool first_ = true;
};

// No decoder: HF joins the tokens with single spaces.
class JoinStage final : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> clone() const override { return std::make_unique<JoinStage>(); }
  void push(const Fragment& f, const Emit& out) override {
    if (f.starts_token && !first_) out({" ", false, false});
    first_ = false;
    out(f);
  }
  void raw(std::string& bytes, bool at_start, bool&) const override {
    if (!at_start) bytes.insert(0, " ");
  }

 private:
  bool first_ = true;
};

size_t count_chars(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += char_length(static_cast<unsigned char>(s[i]))) ++n;
  return n;
}


// `nesting`: how many Sequence levels enclose j (bounded by kMaxComponentNesting).
void add_stages(const JsonView& j, int nesting, std::vector<std::unique_ptr<DecodeStage>>& stages) {
  check_component_nesting(j, nesting);
  const std::string type = j.at("type").str();
  if (type == "Sequence") {
    JsonView list = j.at("decoders");
    for (size_t i = 0; i < list.size(); ++i) add_stages(list[i], nesting + 1, stages);
  } else if (type == "Replace") {
    stages.push_back(std::make_unique<ReplaceStage>(Pattern::from_json(j.at("pattern")),
                                                    j.at("content").str()));
  } else if (type == "ByteFallback") {
    stages.push_back(std::make_unique<ByteFallbackStage>());
  } else if (type == "Fuse") {
    stages.push_back(std::make_unique<FuseStage>());
  } else if (type == "Strip") {
    std::string content = j.at("content").str();
    if (count_chars(content) != 1 || to_valid_utf8(content) != content)
      j.at("content").fail("expected a single character");
    stages.push_back(std::make_unique<StripStage>(content, static_cast<size_t>(j.at("start").integer_in(0, INT64_MAX)),
                                                  static_cast<size_t>(j.at("stop").integer_in(0, INT64_MAX))));
  } else if (type == "ByteLevel") {
    stages.push_back(std::make_unique<ByteLevelStage>());
  } else {
    j.at("type").fail("unsupported decoder type \"" + type + "\"");
  }
}

}  // namespace

Decoder Decoder::from_json(const JsonView& j) {
  Decoder d;
  if (j.is_null())
    d.stages_.push_back(std::make_unique<JoinStage>());
  else
    add_stages(j, 0, d.stages_);
  return d;
}

DecodeStream Decoder::start() const {
  std::vector<std::unique_ptr<DecodeStage>> stages;
  for (const auto& s : stages_) stages.push_back(s->clone());
  return DecodeStream(std::move(stages));
}

}  // namespace phinfer::tok

namespace phinfer::tok {

std::string Decoder::token_bytes(std::string_view token, bool at_start) const {
  std::string bytes(token);
  bool fused = false;
  for (const auto& s : stages_) s->raw(bytes, at_start, fused);
  return bytes;
}

}  // namespace phinfer::tok
