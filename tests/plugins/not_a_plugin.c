/* tests/plugins/not_a_plugin.c — an ordinary shared library: must be refused. */
int not_a_plugin_answer(void) { return 42; }
