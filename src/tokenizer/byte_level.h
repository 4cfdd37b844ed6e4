#pragma once
// GPT-2's reversible byte <-> character table used by ByteLevel pre-tokenizers and decoders:
// printable bytes stand for themselves, the others are moved to U+0100.. so that every byte
// sequence becomes a string of visible characters.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace phinfer::tok {

class ByteLevelTable {
 public:
  static const ByteLevelTable& get();
  // UTF-8 encoding of the character that stands for byte b.
  const std::string& char_for(unsigned char b) const { return chars_[b]; }
  // Byte a character stands for, if any.
  std::optional<unsigned char> byte_for(char32_t c) const {
    if (c < bytes_.size() && bytes_[c] >= 0) return static_cast<unsigned char>(bytes_[c]);
    return std::nullopt;
  }
  std::string encode(std::string_view bytes) const;  // bytes -> characters

 private:
  ByteLevelTable();
  std::array<std::string, 256> chars_;
  std::array<int, 512> bytes_;  // code point -> byte, -1 if none (all mapped code points < 512)
};

}  // namespace phinfer::tok
