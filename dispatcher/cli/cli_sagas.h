/*
 * cli_sagas.h - `weft sagas list|show`: saga instances and their timelines.
 */
#ifndef WEFT_CLI_SAGAS_H
#define WEFT_CLI_SAGAS_H

#include <stdio.h>

#include "config.h"

/* argv[0] is "sagas". 0 ok, 1 runtime error, 2 usage error. */
int weft_sagas_main(const weft_config_t *cfg, int argc, char **argv);
void weft_sagas_usage(FILE *f);

#endif
