# Writes a C++ source defining `const uint32_t NAME[]` and `NAME_words` with INPUT's SPIR-V words
# (little-endian file, as glslc writes it).
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR rem "${n} % 8")
if(NOT rem EQUAL 0)
  message(FATAL_ERROR "${INPUT}: not a whole number of 32-bit words")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])" "0x\\4\\3\\2\\1u," words "${hex}")
math(EXPR count "${n} / 8")
file(WRITE "${OUTPUT}.tmp" "#include <cstddef>\n#include <cstdint>\nnamespace phinfer::backend::vulkan::spirv {\n"
  "extern const uint32_t ${NAME}[];\nextern const size_t ${NAME}_words;\n"
  "const uint32_t ${NAME}[] = {${words}};\nconst size_t ${NAME}_words = ${count};\n}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
