# chordkv_target_warnings(<target>): the project's warning set, errors when CHORDKV_WERROR is on.
function(chordkv_target_warnings target)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                             -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
                                             -Woverloaded-virtual)
    if(CHORDKV_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(CHORDKV_SANITIZE)
        target_compile_options(${target} PRIVATE -fsanitize=${CHORDKV_SANITIZE} -fno-omit-frame-pointer)
        target_link_options(${target} PRIVATE -fsanitize=${CHORDKV_SANITIZE})
    endif()
endfunction()
