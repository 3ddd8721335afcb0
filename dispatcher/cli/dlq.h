/*
 * dlq.h - the `weft dlq` command (list, show, redrive).
 */
#ifndef WEFT_DLQ_H
#define WEFT_DLQ_H

#include "config.h"

/* argv[0] is "dlq". Returns the exit code. */
int weft_dlq_main(const weft_config_t *cfg, int argc, char **argv);

#endif
