/*
 * ops/plugin.c — loading plugins: shared libraries that register ops and hooks.
 *
 * dlopen maps a file's segments as its program headers say; a segment past the end of a
 * truncated file is mapped all the same and the loader dies of SIGBUS touching it. So the file
 * is checked first, by what dlopen will read: a regular file, an ELF shared object of this
 * machine's class, byte order and architecture, whose program headers and every segment they
 * map lie inside the file.
 */
#include "ops/ops.h"

#include <dlfcn.h>
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr elf_header;
typedef Elf64_Phdr elf_segment;
#define ELF_CLASS_HERE ELFCLASS64
#else
typedef Elf32_Ehdr elf_header;
typedef Elf32_Phdr elf_segment;
#define ELF_CLASS_HERE ELFCLASS32
#endif

#if defined(__x86_64__)
#define ELF_MACHINE_HERE EM_X86_64
#elif defined(__aarch64__)
#define ELF_MACHINE_HERE EM_AARCH64
#elif defined(__i386__)
#define ELF_MACHINE_HERE EM_386
#elif defined(__riscv)
#define ELF_MACHINE_HERE EM_RISCV
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELF_DATA_HERE ELFDATA2LSB
#else
#define ELF_DATA_HERE ELFDATA2MSB
#endif

/* Reads exactly n bytes at offset; false on a short read. */
static bool read_at(int fd, void *buf, size_t n, off_t offset) {
    return pread(fd, buf, n, offset) == (ssize_t)n;
}

static tg_status bad_file(tg_ctx *ctx, const char *path, const char *why) {
    return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': %s", path, why);
}

/* The ELF header and program headers of an open file of `size` bytes, checked as said above. */
static tg_status check_elf(tg_ctx *ctx, const char *path, int fd, uint64_t size) {
    elf_header h;
    if (size < sizeof h || !read_at(fd, &h, sizeof h, 0))
        return bad_file(ctx, path, "too short for an ELF header: not a shared library");
    if (memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
        return bad_file(ctx, path, "no ELF magic: not a shared library");
    if (h.e_ident[EI_CLASS] != ELF_CLASS_HERE || h.e_ident[EI_DATA] != ELF_DATA_HERE)
        return bad_file(ctx, path, "an ELF file of another word size or byte order than this "
                        "program's");
#ifdef ELF_MACHINE_HERE
    if (h.e_machine != ELF_MACHINE_HERE)
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': built for ELF machine %u, this "
                         "program runs on machine %u", path, (unsigned)h.e_machine,
                         (unsigned)ELF_MACHINE_HERE);
#endif
    if (h.e_type != ET_DYN) return bad_file(ctx, path, "an ELF file that is not a shared library");
    if (h.e_phentsize != sizeof(elf_segment) || h.e_phnum == 0 || h.e_phoff >= size ||
        (uint64_t)h.e_phnum * sizeof(elf_segment) > size - h.e_phoff)
        return bad_file(ctx, path, "truncated or damaged: its program headers are not inside "
                        "the file");
    for (unsigned i = 0; i < h.e_phnum; i++) {
        elf_segment seg;
        if (!read_at(fd, &seg, sizeof seg, (off_t)(h.e_phoff + i * sizeof seg)))
            return bad_file(ctx, path, "could not read its program headers");
        if (seg.p_type != PT_LOAD && seg.p_type != PT_DYNAMIC) continue;
        if (seg.p_offset > size || seg.p_filesz > size - seg.p_offset)
            return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': truncated: segment %u needs "
                             "bytes up to %llu, the file has %llu", path, i,
                             (unsigned long long)seg.p_offset + (unsigned long long)seg.p_filesz,
                             (unsigned long long)size);
    }
    return TG_OK;
}

/* A path (with a '/'; a bare name is dlopen's to search for) must be a regular, well-formed ELF
 * shared object. */
static tg_status check_plugin_file(tg_ctx *ctx, const char *path) {
    if (!strchr(path, '/')) return TG_OK;
    uint64_t size;
    int fd = tgi_open_input(ctx, "plugin", path, &size);
    if (fd < 0) return tg_errcode(ctx);
    tg_status status = check_elf(ctx, path, fd, size);
    close(fd);
    return status;
}

static tg_status keep_handle(tg_ctx *ctx, void *handle) {
    if (ctx->n_plugins == ctx->cap_plugins) {
        int cap = ctx->cap_plugins ? 2 * ctx->cap_plugins : 4;
        void **grown = tgi_realloc(ctx, ctx->plugins, (size_t)ctx->cap_plugins * sizeof *grown,
                                   (size_t)cap * sizeof *grown);
        if (!grown) return TG_ERR_NOMEM;
        ctx->plugins = grown;
        ctx->cap_plugins = cap;
    }
    ctx->plugins[ctx->n_plugins++] = handle;
    return TG_OK;
}

/* Prefixes the plugin's own error (already on the context) with the plugin's path. */
static tg_status blame(tg_ctx *ctx, const char *path, tg_status status) {
    char inner[TGI_ERRMSG_MAX];
    snprintf(inner, sizeof inner, "%s", ctx->err_code != TG_OK ? ctx->err_msg : tg_status_str(status));
    tg_clear_error(ctx);
    return tgi_error(ctx, status, "plugin '%s': entry point failed: %s", path, inner);
}

tg_status tg_plugin_load(tg_ctx *ctx, const char *path) {
    if (!ctx) return TG_ERR_INVALID;
    if (!path || !*path) return tgi_error(ctx, TG_ERR_INVALID, "plugin: empty path");
    tg_status checked = check_plugin_file(ctx, path);
    if (checked != TG_OK) return checked;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        return tgi_error(ctx, TG_ERR_IO, "plugin '%s': cannot load: %s", path, why ? why : "unknown");
    }
    const int *abi = dlsym(handle, "tapegrad_plugin_abi");
    if (!abi) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': no 'tapegrad_plugin_abi' symbol: not a "
                         "tapegrad plugin (define TG_PLUGIN_DEFINE_ABI)", path);
    }
    if (*abi != TG_PLUGIN_ABI) {
        int theirs = *abi;
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': built for plugin ABI %d, this tapegrad "
                         "speaks ABI %d: rebuild the plugin against this tapegrad.h", path, theirs,
                         TG_PLUGIN_ABI);
    }
    tg_plugin_init_fn init;
    *(void **)&init = dlsym(handle, "tapegrad_plugin_init"); /* POSIX's way to a function pointer */
    if (!init) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': no 'tapegrad_plugin_init' entry point",
                         path);
    }
    /* From here the plugin may have registered ops: it stays loaded, success or not. */
    if (keep_handle(ctx, handle) != TG_OK) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_NOMEM, "plugin '%s': out of memory", path);
    }
    tg_clear_error(ctx); /* the plugin's own failure must be the one reported */
    tg_status status = init(ctx);
    if (status != TG_OK) return blame(ctx, path, status);
    return TG_OK;
}

void tgi_plugins_release(tg_ctx *ctx) {
    for (int i = ctx->n_plugins - 1; i >= 0; i--) dlclose(ctx->plugins[i]);
    tgi_free(ctx, ctx->plugins, (size_t)ctx->cap_plugins * sizeof *ctx->plugins);
    ctx->plugins = NULL;
    ctx->n_plugins = ctx->cap_plugins = 0;
}
