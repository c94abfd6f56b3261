# Steps of the consumer tests that are more than one command; run with cmake -DMODE=... -P.
#   MODE=install     BUILD_DIR, PREFIX: install the build into a fresh PREFIX and check the tree
#   MODE=archive     SOURCE_DIR, ARCHIVE: pack what a source release holds into ARCHIVE
#   MODE=pkg_config  PREFIX, PKG_CONFIG, CXX, SOURCE, OUTPUT: build SOURCE with pkg-config's flags, run it

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "command failed (${rc}): ${cmd}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")
  foreach(f
      include/xconv/xconv.hpp
      include/xconv/config.hpp
      share/cmake/xconv/xconvConfig.cmake
      share/cmake/xconv/xconvConfigVersion.cmake
      share/cmake/xconv/xconvTargets.cmake
      share/pkgconfig/xconv.pc)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "the installed tree lacks ${f}")
    endif()
  endforeach()
  file(GLOB_RECURSE installed RELATIVE "${PREFIX}" "${PREFIX}/*")
  foreach(f IN LISTS installed)
    if(NOT f MATCHES "^(include/xconv/.*\\.hpp|share/cmake/xconv/xconv[A-Za-z]*\\.cmake|share/pkgconfig/xconv\\.pc)$")
      message(FATAL_ERROR "unexpected file in the installed tree: ${f}")
    endif()
  endforeach()
  list(LENGTH installed n)
  message(STATUS "installed ${n} files into ${PREFIX}")

elseif(MODE STREQUAL "archive")
  get_filename_component(dir "${ARCHIVE}" DIRECTORY)
  file(MAKE_DIRECTORY "${dir}")
  file(REMOVE "${ARCHIVE}")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -E tar czf "${ARCHIVE}" CMakeLists.txt LICENSE cmake include
    WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not pack ${SOURCE_DIR} into ${ARCHIVE}")
  endif()

elseif(MODE STREQUAL "pkg_config")
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs xconv
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know xconv under ${PREFIX}/share/pkgconfig")
  endif()
  message(STATUS "pkg-config --cflags --libs xconv: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(found FALSE)
  foreach(f IN LISTS flags)
    if(f MATCHES "^-I(.*)$")
      get_filename_component(dir "${CMAKE_MATCH_1}" REALPATH)
      get_filename_component(want "${PREFIX}/include" REALPATH)
      if(dir STREQUAL want AND EXISTS "${dir}/xconv/xconv.hpp")
        set(found TRUE)
      endif()
    endif()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "pkg-config's flags do not point at ${PREFIX}/include: ${flags}")
  endif()
  run("${CXX}" -std=c++17 "-DXCONV_CONSUMER_KIND=\"pkg-config\"" "${SOURCE}" ${flags} -o "${OUTPUT}")
  run("${OUTPUT}")

else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
