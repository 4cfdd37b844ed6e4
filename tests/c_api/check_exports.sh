#!/usr/bin/env bash
# libphinfer.so's export table holds the C API (every function phinfer.h declares, nothing more) and
# the public C++ API (the classes and functions marked PHINFER_API), plus the C++ standard library's
# template instances; no internal namespace, no private Impl type, no dependency's symbols.
# Usage: check_exports.sh LIBPHINFER_SO PHINFER_H
set -euo pipefail
lib=$1 header=$2
[ -f "$lib" ] || { echo "no library at $lib"; exit 1; }
fail=0

# Plain (C) names: exactly the functions phinfer.h declares.
declared=$(grep 'PHINFER_API' "$header" | grep -oE '\bphinfer_[a-z0-9_]+\(' | head -1000 | tr -d '(' | sort -u)
exported_c=$(nm -D --defined-only "$lib" | awk '$3 !~ /^_Z/ {print $3}' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported_c"))
extra=$(comm -13 <(echo "$declared") <(echo "$exported_c"))
[ -z "$missing" ] || { echo "declared in phinfer.h but not exported:"; echo "$missing"; fail=1; }
[ -z "$extra" ] || { echo "exported C names not declared in phinfer.h:"; echo "$extra"; fail=1; }
[ "$(echo "$declared" | wc -l)" -ge 40 ] || { echo "found only $(echo "$declared" | wc -l) declarations in $header"; fail=1; }

# C++ names, demangled.
cpp=$(nm -D --defined-only "$lib" | awk '$3 ~ /^_Z/ {print $3}' | c++filt)
public='(Error|Tokenizer|ChatTemplate|ModelConfig|GenerationDefaults|ConvertOptions|KVState|Pipeline|Engine|Generator|ChatSession|Grammar|ToolSet)'
public_functions='(convert|cached_conversion|perplexity|compare)'
forbidden='phinfer::(kernels|model|format|tok|jinja|backend|generate|server|synthetic|cli|capi)::|::Impl\b|anonymous namespace|pcre2|\bphinfer_[a-z]'
bad=$(echo "$cpp" | grep -E "$forbidden" || true)
# A dependency's types appear only in the signatures of public functions (ChatSession::load_json).
bad+=$(echo "$cpp" | grep -E 'nlohmann|httplib|CLI::' | grep -vE "^phinfer::$public::" || true)
[ -z "$bad" ] || { echo "internal symbols exported:"; echo "$bad" | head -40; fail=1; }
# Every symbol that names phinfer must be public API (a template instance over public types is fine).
unlisted=$(echo "$cpp" | grep 'phinfer::' |
  grep -vE "^((typeinfo|typeinfo name|vtable|VTT) for |(non-)?virtual thunk to )?phinfer::($public(::|\b)|$public_functions\()" |
  grep -vE '^(std|__gnu_cxx)::|^(typeinfo|typeinfo name|vtable) for std::' || true)
[ -z "$unlisted" ] || { echo "exported phinfer symbols outside the public API:"; echo "$unlisted" | head -40; fail=1; }
# And the public API is there.
for name in 'phinfer::Pipeline::load' 'phinfer::Generator::generate_next_token' 'phinfer::Tokenizer::encode' \
            'typeinfo for phinfer::Error' 'phinfer::Engine::step'; do
  echo "$cpp" | grep -qF "$name" || { echo "missing from the export table: $name"; fail=1; }
done
[ $fail -eq 0 ] && echo "exports: $(echo "$declared" | wc -l) C functions, $(echo "$cpp" | grep -c 'phinfer::') public C++ symbols, OK"
exit $fail
