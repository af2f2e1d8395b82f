/* tests/plugins/no_init.c — declares the ABI but has no entry point: must be refused. */
#include "tapegrad.h"

TG_PLUGIN_DEFINE_ABI;
