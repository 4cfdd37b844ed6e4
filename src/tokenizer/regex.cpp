#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "phinfer/error.h"
#include "tokenizer/utf8.h"

namespace phinfer::tok {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int err) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(err, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) throw Error("regex: out of memory");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* md;
};

}  // namespace

Regex::Regex(std::string_view pattern) {
  auto code = std::make_shared<Code>();
  int err = 0;
  PCRE2_SIZE offset = 0;
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                             PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!code->code)
    throw Error("invalid regex /" + std::string(pattern) + "/ at offset " + std::to_string(offset) +
                ": " + pcre2_message(err));
  code->jit = pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE) == 0;
  code_ = std::move(code);
}

Regex Regex::literal(std::string_view text) {
  std::string pattern = "\\Q";
  // \Q...\E quotes everything except a literal "\E", which is split across two quoted runs.
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'E') {
      pattern += "\\E\\\\\\QE";
      ++i;
    } else {
      pattern += text[i];
    }
  }
  pattern += "\\E";
  return Regex(pattern);
}

namespace {

// One match attempt from `start`; returns false when there is none. Text is valid UTF-8 (checked
// once at the tokenizer's entry), so PCRE2's own UTF check is skipped. If the JIT runs out of
// stack on a pathological input, the interpreter (heap-based backtracking) takes over.
bool match_once(const pcre2_code* code, std::string_view text, size_t start, uint32_t options,
                pcre2_match_data* md, Span& out) {
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), start, options | PCRE2_NO_UTF_CHECK, md,
                       nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subject, text.size(), start,
                     options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw Error("regex match failed: " + pcre2_message(rc));
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  out = {ov[0], ov[1]};
  return true;
}

}  // namespace

std::vector<Span> Regex::find_all(std::string_view text) const {
  std::vector<Span> spans;
  MatchData data(code_->code);
  size_t pos = 0;
  while (pos <= text.size()) {
    Span m;
    if (!match_once(code_->code, text, pos, 0, data.md, m)) break;
    spans.push_back(m);
    if (m.end > m.begin) {
      pos = m.end;
    } else {  // empty match: step over one character so the search moves on
      if (m.end >= text.size()) break;
      pos = m.end + char_length(static_cast<unsigned char>(text[m.end]));
    }
  }
  return spans;
}

bool Regex::matches_at_start(std::string_view text) const {
  MatchData data(code_->code);
  Span m;
  return match_once(code_->code, text, 0, PCRE2_ANCHORED, data.md, m);
}

}  // namespace phinfer::tok
