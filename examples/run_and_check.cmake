# Runs an example and checks its exit code and its output.
#   cmake -DPROGRAM=<exe> [-DARGS=a|b|c] [-DWORKING_DIRECTORY=<dir>] -DEXPECT_0=<regex> [-DEXPECT_1=...]
#         -P run_and_check.cmake
# Passes when the program exits with 0 and its output matches every EXPECT_<i> regex.
# (A plain PASS_REGULAR_EXPRESSION would accept any one regex and ignore the exit code.)

if(NOT DEFINED PROGRAM)
  message(FATAL_ERROR "PROGRAM is not set")
endif()
set(args "")
if(DEFINED ARGS AND NOT ARGS STREQUAL "")
  string(REPLACE "|" ";" args "${ARGS}")
endif()
if(NOT DEFINED WORKING_DIRECTORY)
  set(WORKING_DIRECTORY ".")
endif()
file(MAKE_DIRECTORY "${WORKING_DIRECTORY}")

execute_process(
  COMMAND "${PROGRAM}" ${args}
  WORKING_DIRECTORY "${WORKING_DIRECTORY}"
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
message("${out}${err}")

if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
foreach(i RANGE 0 19)
  if(DEFINED EXPECT_${i})
    if(NOT out MATCHES "${EXPECT_${i}}")
      message(FATAL_ERROR "the output of ${PROGRAM} does not match: ${EXPECT_${i}}")
    endif()
  endif()
endforeach()
