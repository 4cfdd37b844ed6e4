# Writes a C++ source defining `extern const char NAME[]` with INPUT's bytes (NUL-terminated), so a
# file such as the server's web page ships inside the binary.
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp" "namespace ${NAMESPACE} {\nextern const char ${NAME}[];\nconst char ${NAME}[] = {${bytes} 0x00};\n}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
