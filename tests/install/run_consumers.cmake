# ctest install_consumers: installs the build into BUILD_DIR/stage, builds the two consumer projects
# against it (C++: find_package(phinfer); C: pkg-config) and runs them on stories260K-phi3: their output
# must be the golden greedy ids and text exactly. Run as cmake -DBUILD_DIR= -DSOURCE_DIR= -DSHARED_DIR=
# -DC_COMPILER= -DCXX_COMPILER= -DGENERATOR= -P run_consumers.cmake.
foreach(var BUILD_DIR SOURCE_DIR SHARED_DIR C_COMPILER CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumers.cmake needs -D${var}=...")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message(FATAL_ERROR "failed (${code}): ${command}\n${out}\n${err}")
  endif()
endfunction()

# The golden: stories260K-phi3, prompt "Once upon a time", 64 greedy tokens.
set(model ${SHARED_DIR}/models/stories260K-phi3)
if(NOT EXISTS ${model}/golden.json)
  message(FATAL_ERROR "the shared test data is missing: ${model}/golden.json")
endif()
file(READ ${model}/golden.json golden)
string(JSON prompt GET "${golden}" prompts 1 prompt)
string(JSON text GET "${golden}" prompts 1 greedy_text)
string(JSON n GET "${golden}" greedy_new_tokens)
string(JSON count LENGTH "${golden}" prompts 1 greedy_ids)
set(ids "ids:")
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON id GET "${golden}" prompts 1 greedy_ids ${i})
  string(APPEND ids " ${id}")
endforeach()

set(stage ${BUILD_DIR}/stage)
file(REMOVE_RECURSE ${stage} ${BUILD_DIR}/consumer_cpp ${BUILD_DIR}/consumer_c)
foreach(component Runtime Development)
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${stage} --component ${component})
endforeach()
file(GLOB_RECURSE pc_files ${stage}/*/phinfer.pc)
list(GET pc_files 0 pc_file)
get_filename_component(pkgconfig_dir ${pc_file} DIRECTORY)
get_filename_component(libdir ${pkgconfig_dir} DIRECTORY)
foreach(file ${stage}/bin/phinfer ${stage}/include/phinfer/phinfer.h ${stage}/include/phinfer/pipeline.h
        ${libdir}/libphinfer.so ${libdir}/libphinfer.so.0 ${libdir}/cmake/phinfer/phinferConfig.cmake
        ${libdir}/cmake/phinfer/phinferConfigVersion.cmake ${libdir}/cmake/phinfer/phinferTargets.cmake)
  if(NOT EXISTS ${file})
    message(FATAL_ERROR "not installed: ${file}")
  endif()
endforeach()

# C++, through the CMake package.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer_cpp -B ${BUILD_DIR}/consumer_cpp -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${stage} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
run(${CMAKE_COMMAND} --build ${BUILD_DIR}/consumer_cpp)
execute_process(COMMAND ${BUILD_DIR}/consumer_cpp/consumer_cpp ${model} ${prompt} ${n}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(expected "${ids}\ntext: ${text}\nerror: caught phinfer::Error\n")
if(NOT code EQUAL 0 OR NOT out STREQUAL expected)
  message(FATAL_ERROR "consumer_cpp (exit ${code}) printed:\n${out}\n${err}\nexpected:\n${expected}")
endif()
message(STATUS "consumer_cpp: golden ids and text")

# C, through pkg-config (and a plain Makefile); the library is found at run time by LD_LIBRARY_PATH.
file(MAKE_DIRECTORY ${BUILD_DIR}/consumer_c)
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pkgconfig_dir} CC=${C_COMPILER}
    make -s -f ${SOURCE_DIR}/tests/install/consumer_c/Makefile -C ${BUILD_DIR}/consumer_c)
execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir}
                        ${BUILD_DIR}/consumer_c/consumer_c ${model} ${prompt} ${n}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(STRINGS ${SOURCE_DIR}/CMakeLists.txt project_line REGEX "^project\\(phinfer VERSION")
string(REGEX MATCH "VERSION ([0-9.]+)" _ "${project_line}")
set(expected "text: ${text}\n${ids}\nversion: ${CMAKE_MATCH_1}\n")
if(NOT code EQUAL 0 OR NOT out STREQUAL expected)
  message(FATAL_ERROR "consumer_c (exit ${code}) printed:\n${out}\n${err}\nexpected:\n${expected}")
endif()
message(STATUS "consumer_c: golden ids and text")
