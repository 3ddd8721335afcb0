/*
 * exe.c - the directory of the running program's binary (exe.h).
 *
 * Runs in any weft process; reads /proc/self/exe (Linux), so the answer
 * follows the binary, not the working directory or argv[0].
 */
#include "exe.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void weft_exe_dir(char *out, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, len, ".");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s", self[0] ? self : "/");
}
