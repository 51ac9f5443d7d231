// Where code goes in libstrata.so (see "Code layout" in src/CMakeLists.txt):
// the code only debugging, statistics and the strata_* API run lies after
// the code every program runs, so that a program keeps one 64 KiB window of
// strata's code resident (the kernel maps code around each page fault in
// 64 KiB windows).
#ifndef STRATA_PLATFORM_CODE_LAYOUT_H
#define STRATA_PLATFORM_CODE_LAYOUT_H

// For the functions of those late files that every process runs anyway, once
// (start-up latches, constructors and destructors): placed with the start-up
// code, which the linker puts first, rather than beside the rest of their
// file. (g++ places constructors there itself; clang does not.)
#define STRATA_STARTUP_CODE __attribute__((section(".text.startup")))

#endif  // STRATA_PLATFORM_CODE_LAYOUT_H
