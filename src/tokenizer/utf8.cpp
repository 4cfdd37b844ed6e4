#include "tokenizer/utf8.h"

namespace phinfer::tok {

namespace {

// Valid range of the second byte of a sequence, by lead byte (RFC 3629 table; excludes overlong
// forms, surrogates and code points above U+10FFFF).
bool second_byte_ok(unsigned char lead, unsigned char b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

// Expected sequence length for a lead byte, 0 if it cannot start a sequence.
size_t expected_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// How many bytes from s[i] form a valid prefix of a sequence (the maximal subpart), and whether
// the sequence is complete.
struct Prefix {
  size_t valid = 0;
  bool complete = false;
};

Prefix valid_prefix(std::string_view s, size_t i) {
  auto lead = static_cast<unsigned char>(s[i]);
  size_t need = expected_length(lead);
  if (need == 0) return {0, false};
  if (need == 1) return {1, true};
  size_t n = 1;
  while (n < need && i + n < s.size()) {
    auto b = static_cast<unsigned char>(s[i + n]);
    bool ok = n == 1 ? second_byte_ok(lead, b) : is_continuation(b);
    if (!ok) break;
    ++n;
  }
  return {n, n == need};
}

}  // namespace

size_t valid_sequence_length(std::string_view s, size_t i) {
  Prefix p = valid_prefix(s, i);
  return p.complete ? p.valid : 0;
}

char32_t decode_at(std::string_view s, size_t i) {
  auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return b0;
  size_t n = char_length(b0);
  char32_t cp = b0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_white_space(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

size_t leading_white_space(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = char_length(static_cast<unsigned char>(s[i]));
    if (!is_white_space(decode_at(s, i))) break;
    i += n;
  }
  return i;
}

size_t trailing_white_space(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && is_continuation(static_cast<unsigned char>(s[start]))) --start;
    if (!is_white_space(decode_at(s, start))) break;
    end = start;
  }
  return s.size() - end;
}

void LossyUtf8Decoder::feed(std::string_view bytes, std::string& out) {
  std::string joined;
  if (!pending_.empty()) {
    joined = pending_ + std::string(bytes);
    bytes = joined;
    pending_.clear();
  }
  size_t i = 0;
  while (i < bytes.size()) {
    Prefix p = valid_prefix(bytes, i);
    if (p.complete) {
      out.append(bytes.substr(i, p.valid));
      i += p.valid;
    } else if (p.valid > 0 && i + p.valid == bytes.size()) {
      pending_ = std::string(bytes.substr(i));  // may still be completed by later bytes
      return;
    } else {
      out.append(kReplacementChar);
      i += p.valid > 0 ? p.valid : 1;
    }
  }
}

void LossyUtf8Decoder::finish(std::string& out) {
  if (!pending_.empty()) out.append(kReplacementChar);
  pending_.clear();
}

std::string to_valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  LossyUtf8Decoder d;
  d.feed(bytes, out);
  d.finish(out);
  return out;
}

}  // namespace phinfer::tok
