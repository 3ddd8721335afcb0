/*
 * exe.h - where the running program's binary lives. weft finds
 * weft-worker and the example functions beside it (`weft run`,
 * `weft invoke`, weft-bench-pool), unless configured otherwise.
 */
#ifndef WEFT_EXE_H
#define WEFT_EXE_H

#include <stddef.h>

/* Writes the directory of /proc/self/exe to out: "." when it cannot be
 * read, "/" for a binary in the root directory. */
void weft_exe_dir(char *out, size_t len);

#endif
