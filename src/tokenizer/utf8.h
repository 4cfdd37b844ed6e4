#pragma once
// UTF-8 helpers the tokenizer needs: walking code points, Unicode White_Space (for added-token
// lstrip/rstrip), and lossy decoding that replaces invalid bytes with U+FFFD.
#include <cstdint>
#include <string>
#include <string_view>

namespace phinfer::tok {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of a valid UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there are not one.
size_t valid_sequence_length(std::string_view s, size_t i);

// Byte length of the character at s[i] in text already known to be valid UTF-8.
inline size_t char_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Code point of the (valid) character at s[i].
char32_t decode_at(std::string_view s, size_t i);

void append_utf8(std::string& out, char32_t cp);

// Unicode White_Space property (what Rust's char::is_whitespace tests). U+200B and U+FEFF are not.
bool is_white_space(char32_t cp);

// Bytes that form a white-space character at the start / end of s (0 if none).
size_t leading_white_space(std::string_view s);
size_t trailing_white_space(std::string_view s);

// Decodes bytes the way Rust's String::from_utf8_lossy and the WHATWG decoder do: each maximal
// ill-formed subpart becomes one U+FFFD. Streaming: feed() keeps an incomplete trailing sequence
// until the next call, finish() turns such a leftover into U+FFFD.
class LossyUtf8Decoder {
 public:
  void feed(std::string_view bytes, std::string& out);
  void finish(std::string& out);

 private:
  std::string pending_;  // an incomplete but so far valid sequence (at most 3 bytes)
};

// Whole-string convenience form of LossyUtf8Decoder.
std::string to_valid_utf8(std::string_view bytes);

}  // namespace phinfer::tok
