/*
 * worker_log.h - the worker process's log lines: the house line
 * (`ts level component[pid] message`) ending in function=NAME once the
 * function is known. worker.c and the runtimes both write through it, so
 * neither depends on the other for logging.
 */
#ifndef WEFT_WORKER_LOG_H
#define WEFT_WORKER_LOG_H

#include "log.h"

/* The function every later line names (the string must outlive the
 * process's logging: argv). */
void weft_worker_log_function(const char *function);
/* --quiet: the worker's own info lines ("worker" component) are dropped,
 * never the function's. */
void weft_worker_log_quiet(int quiet);

void weft_worker_log(const char *component, long pid, weft_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
