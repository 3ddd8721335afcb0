/*
 * invoke.h - `weft invoke`: run a function once, locally, without brokers
 * or PostgreSQL, through the real pool and worker machinery (a pool of one
 * worker), and print its result.
 */
#ifndef WEFT_INVOKE_H
#define WEFT_INVOKE_H

/* argv[0] is "invoke". Returns the process exit code: 0 when the function
 * answered ok (or drop), 1 for retry, fail or a crash, 2 for usage errors,
 * 130 when interrupted. */
int weft_invoke_main(int argc, char **argv);

#endif
