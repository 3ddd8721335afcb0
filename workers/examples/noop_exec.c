/*
 * noop_exec.c - noop_exec, the exec-runtime twin of noop.so for the
 * benchmark (ops/bench): a compiled program speaking the exec protocol
 * (workers/proto/EXEC_PROTOCOL.md) that answers every request with
 * {"disposition":"ok"} and no data. It measures what the exec runtime
 * itself costs, without an interpreter's start or JSON parsing.
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    static const char reply[] = "{\"disposition\":\"ok\"}";
    char line[32];
    char *buf = NULL;
    size_t cap = 0;
    while (fgets(line, sizeof(line), stdin)) {
        char *end;
        unsigned long len = strtoul(line, &end, 10);
        if (end == line || *end != '\n' || len == 0 || len > (1ul << 30))
            return 1;
        if (len + 1 > cap) {
            free(buf);
            cap = len + 1;
            buf = malloc(cap);
            if (!buf)
                return 1;
        }
        /* The payload and its trailing newline. */
        if (fread(buf, 1, len + 1, stdin) != len + 1)
            return 1;
        printf("%zu\n%s\n", sizeof(reply) - 1, reply);
        fflush(stdout);
    }
    free(buf);
    return 0;
}
