/* tests/test_plugin_files.c — tg_plugin_load checks the file before dlopen: a truncated ELF
 * (SIGBUS inside dlopen before), a foreign or damaged one, a directory, a device or a FIFO is a
 * clear error, never a signal or a hang. The good plugin comes from $TAPEGRAD_TEST_PLUGINS. */
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

static char dir[64];

static void setup(void) {
    fixture_setup();
    temp_dir_make(dir, "tapegrad-plugin-files");
}

static void teardown(void) {
    temp_dir_remove(dir);
    fixture_teardown();
}

TestSuite(plugin_files, .init = setup, .fini = teardown, .timeout = 20);

static const char *in_dir(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* The bytes of the swish plugin. */
static unsigned char *good_plugin(size_t *size) {
    const char *plugins = getenv("TAPEGRAD_TEST_PLUGINS");
    cr_assert_not_null(plugins, "TAPEGRAD_TEST_PLUGINS is not set (run the suite with zig build test)");
    char path[4096];
    snprintf(path, sizeof path, "%s/libplugin_swish.so", plugins);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static unsigned char bytes[1 << 22];
    *size = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    cr_assert_gt(*size, 4096u);
    return bytes;
}

static const char *write_file(const char *name, const void *bytes, size_t n) {
    const char *path = in_dir(name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return path;
}

static void expect_refused(const char *path, const char *fragment) {
    tg_clear_error(ctx);
    cr_expect_neq(tg_plugin_load(ctx, path), TG_OK, "%s loaded", path);
    expect_errmsg_has(ctx, path, fragment);
}

Test(plugin_files, an_intact_copy_still_loads) {
    size_t n;
    unsigned char *bytes = good_plugin(&n);
    cr_expect_eq(tg_plugin_load(ctx, write_file("good.so", bytes, n)), TG_OK, "%s", tg_errmsg(ctx));
}

/* Where the last segment dlopen maps ends: a file cut before it would be SIGBUS in dlopen. (Cut
 * after it, only the section headers are lost, which dlopen does not read: that still loads.) */
static size_t mapped_end(const unsigned char *bytes) {
    Elf64_Ehdr h;
    memcpy(&h, bytes, sizeof h);
    size_t end = 0;
    for (int i = 0; i < h.e_phnum; i++) {
        Elf64_Phdr p;
        memcpy(&p, bytes + h.e_phoff + (size_t)i * sizeof p, sizeof p);
        if (p.p_type == PT_LOAD && p.p_offset + p.p_filesz > end) end = p.p_offset + p.p_filesz;
    }
    return end;
}

Test(plugin_files, a_truncated_plugin_is_an_error_not_sigbus) {
    size_t n;
    unsigned char *bytes = good_plugin(&n);
    size_t end = mapped_end(bytes);
    cr_assert_gt(end, 1024u);
    expect_refused(write_file("trunc.so", bytes, end - 1), "truncated");
    expect_refused(write_file("half.so", bytes, end / 2), "truncated");
    expect_refused(write_file("tiny.so", bytes, 100), "truncated");
    expect_refused(write_file("header_only.so", bytes, 40), "too short");
}

Test(plugin_files, files_that_are_not_elf_are_refused) {
    expect_refused(write_file("empty.so", "", 0), "too short");
    static const char text[] = "this is a text file, long enough to hold an ELF header: 0123456789";
    expect_refused(write_file("text.so", text, sizeof text), "no ELF magic");
}

Test(plugin_files, an_elf_of_another_machine_or_class_is_refused) {
    size_t n;
    unsigned char *bytes = good_plugin(&n);
    bytes[EI_CLASS] = bytes[EI_CLASS] == ELFCLASS64 ? ELFCLASS32 : ELFCLASS64;
    expect_refused(write_file("class.so", bytes, n), "word size");
    bytes = good_plugin(&n);
    bytes[EI_DATA] = bytes[EI_DATA] == ELFDATA2LSB ? ELFDATA2MSB : ELFDATA2LSB;
    expect_refused(write_file("endian.so", bytes, n), "byte order");
    bytes = good_plugin(&n);
    uint16_t machine = EM_SPARC;
    memcpy(bytes + offsetof(Elf64_Ehdr, e_machine), &machine, sizeof machine);
    expect_refused(write_file("machine.so", bytes, n), "machine");
}

Test(plugin_files, directories_devices_and_fifos_are_refused_without_blocking) {
    cr_assert_eq(mkdir(in_dir("dir.so"), 0700), 0);
    expect_refused(in_dir("dir.so"), "directory");
    expect_refused("/dev/null", "not a regular file");
    cr_assert_eq(mkfifo(in_dir("fifo.so"), 0600), 0);
    expect_refused(in_dir("fifo.so"), "not a regular file"); /* would block in open() */
    expect_refused(in_dir("missing.so"), "cannot open");
}
