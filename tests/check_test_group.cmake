# Fails when a test group (irepa_add_test_group) holds a test case that belongs to none of its
# files. Each file's cases are discovered by the tag "[#<file stem>]" that test_main.cpp gives
# them, so a case tagged with another name (a TEST_CASE in a header a group file includes, or a
# file added to the sources but not to the group's list) would never be run by ctest.
#   cmake -DGROUP=<executable> -DSTEMS=<stem,stem,...> -P check_test_group.cmake
if(NOT GROUP OR NOT STEMS)
  message(FATAL_ERROR "check_test_group.cmake: expected -DGROUP=<executable> -DSTEMS=<file stems>, found GROUP='${GROUP}' STEMS='${STEMS}'")
endif()
string(REPLACE "," ";" STEMS "${STEMS}")
set(spec "")
foreach(stem IN LISTS STEMS)
  string(APPEND spec "~[#${stem}]")
endforeach()
# Catch2 ANDs the excluded tags: what is listed is in none of the files.
execute_process(COMMAND ${GROUP} ${spec} --list-test-names-only
                OUTPUT_VARIABLE orphans ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc MATCHES "^[0-9]+$")  # a crash (a signal's name here) would list nothing and hide the orphans
  message(FATAL_ERROR "${GROUP}: listing the cases outside its files failed (${rc}): ${err}")
endif()
string(STRIP "${orphans}" orphans)
if(NOT orphans STREQUAL "")
  string(REPLACE "\n" "\n  " orphans "${orphans}")
  message(FATAL_ERROR "${GROUP}: test cases that belong to none of the group's files (${STEMS}), so ctest never runs them:\n  ${orphans}")
endif()
# A group that lists nothing at all is broken too (an empty spec would hide every orphan).
execute_process(COMMAND ${GROUP} --list-test-names-only OUTPUT_VARIABLE all RESULT_VARIABLE rc_all)
string(STRIP "${all}" all)
if(all STREQUAL "")
  message(FATAL_ERROR "${GROUP}: expected test cases, found none (exit ${rc_all}): ${err}")
endif()
