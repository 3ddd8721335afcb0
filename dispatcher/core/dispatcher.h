/*
 * dispatcher.h - `weft run`: the daemon's event loop.
 */
#ifndef WEFT_DISPATCHER_H
#define WEFT_DISPATCHER_H

#include "config.h"

/* Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a
 * clean shutdown, 1 on a runtime error, 2 on a configuration error. */
int weft_dispatcher_run(weft_config_t *cfg);

#endif
