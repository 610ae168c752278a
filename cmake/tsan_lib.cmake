# TIDAL_TSAN_LIB: libtidalloc_tsan.so, the library itself instrumented with
# ThreadSanitizer, for the TSan stress tests (tests/stress, label `tsan`).
#
# TSan's runtime defines malloc, free... in every TSan program, so a program
# would never call a TSan-built tidalloc under those names. Here every
# exported allocation entry point is renamed on the command line
# (-Dmalloc=tdt_malloc, ...), the glibc aliases (__libc_malloc...) are left
# out (TIDAL_NO_GLIBC_ALIASES) and so is the C++ new/delete family
# (src/cxx_new.cc). The tests reach tidalloc through the tdt_ names
# (tests/stress/tsan_rename.h); libc and the TSan runtime keep TSan's malloc.
# The other public functions (tidal_*) keep their names: no runtime defines
# them. Included by the top-level CMakeLists.txt after TIDAL_SOURCES.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TIDAL_TSAN_LIB needs clang as the C compiler (configure with CC=clang); "
                      "C compiler is ${CMAKE_C_COMPILER_ID}")
endif()

set(TIDAL_TSAN_RENAMED malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign
    valloc pvalloc malloc_usable_size free_sized free_aligned_sized cfree malloc_trim mallinfo mallinfo2
    malloc_stats malloc_info mallopt)
set(TIDAL_TSAN_RENAME_DEFS "")
foreach(fn ${TIDAL_TSAN_RENAMED})
  list(APPEND TIDAL_TSAN_RENAME_DEFS ${fn}=tdt_${fn})
endforeach()
set(TIDAL_TSAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)

add_library(tidalloc_tsan SHARED ${TIDAL_SOURCES})
target_include_directories(tidalloc_tsan PUBLIC
  ${CMAKE_CURRENT_SOURCE_DIR}/include PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_compile_options(tidalloc_tsan PRIVATE ${TIDAL_WARN} ${TIDAL_LIB_C_FLAGS} ${TIDAL_TSAN_FLAGS})
target_compile_definitions(tidalloc_tsan PRIVATE _GNU_SOURCE
  TIDAL_VERSION_STRING="${PROJECT_VERSION}"
  $<$<BOOL:${TIDAL_DEBUG}>:TIDAL_DEBUG=1>
  TIDAL_CHECKS=$<BOOL:${TIDAL_CHECKS}>
  TIDAL_STATS=$<BOOL:${TIDAL_STATS}>
  $<$<BOOL:${TIDAL_SECURE_DEFAULT}>:TIDAL_SECURE_DEFAULT=1>
  TIDAL_NO_GLIBC_ALIASES ${TIDAL_TSAN_RENAME_DEFS})
# A shared library does not carry the TSan runtime: its __tsan_* references
# bind to the executable's (the tests link with -fsanitize=thread).
target_link_options(tidalloc_tsan PRIVATE ${TIDAL_TSAN_FLAGS} -Wl,-z,now)
target_link_libraries(tidalloc_tsan PRIVATE pthread ${CMAKE_DL_LIBS})
set_target_properties(tidalloc_tsan PROPERTIES LINKER_LANGUAGE C)
