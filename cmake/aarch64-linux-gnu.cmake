# Cross-build for arm64 with Debian's cross compilers (gcc-aarch64-linux-gnu,
# g++-aarch64-linux-gnu, libc6-dev-arm64-cross), tests run under qemu-user:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   (cd build-arm64 && QEMU_PAGESIZE=65536 ctest -L arm64)
# CTest prefixes every test executable with CMAKE_CROSSCOMPILING_EMULATOR;
# QEMU_PAGESIZE (qemu's -p) picks the page size the program sees (4096 when
# unset). Tests that run shell scripts or host programs are not labelled
# arm64 (see tests/CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(TIDAL_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${TIDAL_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${TIDAL_CROSS_TRIPLE}-g++)
set(CMAKE_FIND_ROOT_PATH /usr/${TIDAL_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# -L: where the arm64 dynamic loader and libraries live.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${TIDAL_CROSS_TRIPLE})
