include(GoogleTest)

# chordkv_add_test(<name> LABEL <label> [TIMEOUT <s>] [SERIAL] SOURCES <files...> LIBS <targets...>)
# One gtest executable; each test case is registered in ctest with the given label
# (unit, sim, integration, fuzz — STYLE.md 9). SERIAL: never run beside other tests (tests
# that start processes and bind ports).
function(chordkv_add_test name)
    cmake_parse_arguments(ARG "SERIAL" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
    set(serial FALSE)
    if(ARG_SERIAL)
        set(serial TRUE)
    endif()
    if(NOT ARG_TIMEOUT)
        set(ARG_TIMEOUT 300)
    endif()
    add_executable(${name} ${ARG_SOURCES})
    target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
    chordkv_target_warnings(${name})
    gtest_discover_tests(${name}
        PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT} RUN_SERIAL ${serial}
        DISCOVERY_TIMEOUT 60)
endfunction()

