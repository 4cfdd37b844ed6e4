# libphinfer.so: the C API (include/phinfer/phinfer.h, bindings/c/) and the public C++ API, nothing else.
# phinfer_core is compiled position-independent with hidden symbols; the shared library takes all of it
# (whole archive) and exports only the declarations marked PHINFER_API (include/phinfer/export.h). The
# CLI and the tests keep linking phinfer_core statically. Included by CMakeLists.txt.
if(CMAKE_VERSION VERSION_LESS 3.24)
  message(FATAL_ERROR "libphinfer.so needs CMake 3.24 or newer (LINK_LIBRARY:WHOLE_ARCHIVE); found ${CMAKE_VERSION}")
endif()
enable_language(C)
include(GNUInstallDirs)

set_target_properties(phinfer_core PROPERTIES
  POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)

add_library(phinfer_shared SHARED bindings/c/phinfer_c.cpp)
add_library(phinfer::phinfer ALIAS phinfer_shared)
set_target_properties(phinfer_shared PROPERTIES
  OUTPUT_NAME phinfer EXPORT_NAME phinfer
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}   # libphinfer.so.0
  CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
target_compile_definitions(phinfer_shared PRIVATE PHINFER_VERSION="${PROJECT_VERSION}")
target_include_directories(phinfer_shared PUBLIC
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# The C++ headers use nlohmann::json (ChatMessage, ChatSession); PCRE2 stays inside the library.
target_link_libraries(phinfer_shared
  PRIVATE $<LINK_LIBRARY:WHOLE_ARCHIVE,phinfer_core>
  PUBLIC nlohmann_json::nlohmann_json)
target_link_options(phinfer_shared PRIVATE -Wl,--no-undefined)

if(PHINFER_BUILD_TESTS)
  pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
  # The C API from a C11 program: goldens, streaming, stop, rewind, chat template, error paths.
  add_executable(c_api_test tests/c_api/c_api_test.c)
  set_target_properties(c_api_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  target_compile_options(c_api_test PRIVATE -Wall -Wextra -Werror -pedantic)
  target_link_libraries(c_api_test PRIVATE phinfer_shared PkgConfig::JANSSON Threads::Threads m)
  add_test(NAME c_api COMMAND c_api_test ${CMAKE_SOURCE_DIR}/../shared ${CMAKE_BINARY_DIR}/test-tmp/c_api)
  set_tests_properties(c_api PROPERTIES TIMEOUT 300)
endif()
# The export table holds the C API and the public C++ API only (no internal namespace, no dependency);
# checked on the Release library (sanitizers add symbols of their own).
if(PHINFER_BUILD_TESTS AND NOT PHINFER_SANITIZE)
  add_test(NAME shared_library_exports
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/c_api/check_exports.sh $<TARGET_FILE:phinfer_shared>
            ${CMAKE_SOURCE_DIR}/include/phinfer/phinfer.h)
endif()
