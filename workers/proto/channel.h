/*
 * channel.h - what both ends of a worker channel agree on besides the
 * frames themselves (frame.h): where the channel is, how a worker ends,
 * and the limits the worker applies by default.
 *
 * The pool (pool.c, in the dispatcher) and weft-worker (worker.c) include
 * it; neither includes the other's header.
 */
#ifndef WEFT_CHANNEL_H
#define WEFT_CHANNEL_H

/* The worker's end of the socketpair, as the pool's spawn file actions
 * place it. */
#define WEFT_CHANNEL_FD 3

/* The seq of the ready frame a worker sends once its function is loaded;
 * invocation seqs start at 1. */
#define WEFT_CHANNEL_READY_SEQ 0

/* weft-worker exit codes. 0: the channel closed (normal end). 1: I/O error
 * on the channel. The pool respawns in every case, with backoff; after a
 * configuration error it waits the longest backoff (5 s). */
#define WEFT_WORKER_EXIT_CONFIG 2   /* cannot load or initialise the function */
#define WEFT_WORKER_EXIT_PROTOCOL 3 /* undecodable frame from the dispatcher */
#define WEFT_WORKER_EXIT_NOMEM 4    /* out of memory outside the function */

/* Error prefix of the FAIL a worker sends for an oversized result. */
#define WEFT_POOL_RESULT_TOO_LARGE "result_too_large: "

/* max_result_bytes used when the configuration says 0. */
#define WEFT_POOL_DEFAULT_MAX_RESULT (1024u * 1024u)

#endif
