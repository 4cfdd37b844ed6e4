#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace phinfer::tok {

ByteLevelTable::ByteLevelTable() {
  bytes_.fill(-1);
  auto keeps_itself = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    char32_t cp = keeps_itself(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
    append_utf8(chars_[b], cp);
    bytes_[cp] = b;
  }
}

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table;
  return table;
}

std::string ByteLevelTable::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += chars_[b];
  return out;
}

}  // namespace phinfer::tok
