# `cmake --install build [--prefix DIR]`: the headers, libphinfer.so (with its SONAME links), the
# phinfer CLI, a CMake package (find_package(phinfer CONFIG) -> phinfer::phinfer) and phinfer.pc.
# Components: Runtime (library, CLI) and Development (headers, package files). Included by CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(PHINFER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/phinfer)
install(TARGETS phinfer_shared EXPORT phinferTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime NAMELINK_COMPONENT Development)
install(TARGETS phinfer RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime)
install(DIRECTORY include/phinfer DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT Development
  FILES_MATCHING PATTERN "*.h")
install(EXPORT phinferTargets NAMESPACE phinfer:: DESTINATION ${PHINFER_CMAKE_DIR} COMPONENT Development)

configure_package_config_file(cmake/phinferConfig.cmake.in ${CMAKE_BINARY_DIR}/package/phinferConfig.cmake
  INSTALL_DESTINATION ${PHINFER_CMAKE_DIR})
# 0.x: a new minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/phinferConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
# The .pc file finds its prefix from its own place, so a staged or moved install works too.
file(RELATIVE_PATH PHINFER_PC_PREFIX_FROM_PCFILEDIR
  ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" PHINFER_PC_PREFIX_FROM_PCFILEDIR "${PHINFER_PC_PREFIX_FROM_PCFILEDIR}")
configure_file(cmake/phinfer.pc.in ${CMAKE_BINARY_DIR}/package/phinfer.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/package/phinferConfig.cmake ${CMAKE_BINARY_DIR}/package/phinferConfigVersion.cmake
  DESTINATION ${PHINFER_CMAKE_DIR} COMPONENT Development)
install(FILES ${CMAKE_BINARY_DIR}/package/phinfer.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT Development)

# Two consumers built against a staged install (build/stage): C++ with find_package, C with pkg-config;
# both generate from a golden model. Not under the sanitizers: the consumers are built without them.
if(PHINFER_BUILD_TESTS AND NOT PHINFER_SANITIZE)
  add_test(NAME install_consumers
           COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
                   -DSHARED_DIR=${CMAKE_SOURCE_DIR}/../shared -DC_COMPILER=${CMAKE_C_COMPILER}
                   -DCXX_COMPILER=${CMAKE_CXX_COMPILER} -DGENERATOR=${CMAKE_GENERATOR}
                   -P ${CMAKE_SOURCE_DIR}/tests/install/run_consumers.cmake)
  set_tests_properties(install_consumers PROPERTIES TIMEOUT 600)
endif()
