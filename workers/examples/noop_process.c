/*
 * noop_process.c - weft-bench-noop, the process weft-bench-pool starts once
 * per event to compare a warm pool with fork+exec per event (the CGI
 * model): it reads its stdin to EOF, writes nothing and exits 0.
 */
#include <unistd.h>

int main(void)
{
    char buf[4096];
    while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
        ;
    return 0;
}
