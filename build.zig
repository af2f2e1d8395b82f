//! Build script for tapegrad (C11), written for Zig 0.17.
//!
//!   zig build [install]        libtapegrad.a, libtapegrad.so.0.1.0 (+ .so.0/.so symlinks),
//!                              include/tapegrad.h, lib/pkgconfig/tapegrad.pc,
//!                              bin/tapegrad (cli/*.c), bin/<stem> for each examples/<stem>.c
//!   zig build test [-- ARGS]   Criterion suite (tests/*.c + library sources); ARGS go to
//!                              Criterion, e.g. `zig build test -- --filter 'ops/*'`
//!   zig build run [-- ARGS]    build and run bin/tapegrad
//!   zig build bench            build and run every bench/<stem>.c, one after another
//!   zig build examples         build and install the examples only
//!
//!   -Dblas=false               no OpenBLAS, no TG_USE_BLAS macro
//!   -Dsanitize=true            `test` runs the suite under ASan + UBSan (built with the
//!                              system C compiler, see addSanitizedTestRun)
//!   -Doptimize=Debug|ReleaseSafe|ReleaseFast|ReleaseSmall
//!
//! Source lists are globbed (non-recursively) when build.zig runs. Zig 0.17 caches the
//! result of that configure phase, so every globbed directory is registered with
//! `dependOnDirectoryContents`: adding or removing a file re-runs the configure phase.

const std = @import("std");
const Build = std.Build;
const Compile = Build.Step.Compile;
const Module = Build.Module;

const version: std.SemanticVersion = .{ .major = 0, .minor = 1, .patch = 0 };

/// Directories whose `*.c` files (directly inside, no recursion) make up the library.
const lib_dirs = [_][]const u8{ "autograd", "ops", "models", "diagnostics" };

/// Flags for every C file, whether compiled by Zig or by the sanitizer build.
const c_flags = [_][]const u8{ "-std=c11", "-Wall", "-Wextra", "-D_POSIX_C_SOURCE=200809L" };

/// Extra flags of the `-Dsanitize=true` build (system C compiler).
const sanitize_flags = [_][]const u8{
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=undefined",
    "-g",
    "-O1",
};

/// Everything the helpers below need to know about this configuration.
const Config = struct {
    b: *Build,
    target: Build.ResolvedTarget,
    optimize: std.builtin.Optimize,
    blas: bool,
};

pub fn build(b: *Build) void {
    const cfg: Config = .{
        .b = b,
        .target = b.standardTargetOptions(.{}),
        .optimize = b.standardOptimizeOption(.{}),
        .blas = b.option(bool, "blas", "Use OpenBLAS (cblas) and define TG_USE_BLAS=1 (default: true)") orelse true,
    };
    const sanitize = b.option(bool, "sanitize", "Run `test` under AddressSanitizer + UBSan (default: false)") orelse false;
    const sanitize_cc = b.option([]const u8, "sanitize-cc", "C compiler for -Dsanitize=true (default: cc)") orelse "cc";

    // ---- source discovery (configure time) ----
    var lib_srcs: std.ArrayList([]const u8) = .empty;
    var headers: std.ArrayList([]const u8) = .empty; // only used as inputs of the sanitizer build
    for (lib_dirs) |dir| {
        appendAll(b, &lib_srcs, glob(b, dir, ".c"));
        appendAll(b, &headers, glob(b, dir, ".h"));
    }
    appendAll(b, &headers, glob(b, "include", ".h"));
    appendAll(b, &headers, glob(b, "tests", ".h"));
    const cli_srcs = glob(b, "cli", ".c");
    const example_srcs = glob(b, "examples", ".c");
    const test_srcs = glob(b, "tests", ".c");
    const bench_srcs = glob(b, "bench", ".c");

    const test_step = b.step("test", "Build and run the Criterion test suite (args after -- go to Criterion)");
    const run_step = b.step("run", "Build and run the tapegrad CLI (args after -- are passed on)");
    const bench_step = b.step("bench", "Build and run every benchmark in bench/");
    const examples_step = b.step("examples", "Build and install the examples");

    // ---- library: static + shared, public header, pkg-config file ----
    // Without any library source there is nothing to archive; programs are then
    // built from their own sources only (and fail to link if they need the library).
    const lib: ?*Compile = if (lib_srcs.items.len == 0) null else blk: {
        const static = addLibrary(cfg, .static, lib_srcs.items);
        const shared = addLibrary(cfg, .dynamic, lib_srcs.items);
        b.installArtifact(static);
        b.installArtifact(shared);
        break :blk static;
    };
    if (exists(b, "include/tapegrad.h")) {
        b.getInstallStep().dependOn(&b.addInstallHeaderFile(b.path("include/tapegrad.h"), "tapegrad.h").step);
    }
    const pc = b.addWriteFiles().add("tapegrad.pc", pkgConfigFile(cfg));
    b.getInstallStep().dependOn(&b.addInstallLibFile(pc, "pkgconfig/tapegrad.pc").step);

    // ---- cli ----
    if (cli_srcs.len > 0) {
        const cli = addProgram(cfg, "tapegrad", cli_srcs, lib, false);
        b.installArtifact(cli);
        const run = b.addRunArtifact(cli);
        run.stdio = .inherit;
        run.addPassthruArgs();
        run_step.dependOn(&run.step);
    } else {
        run_step.dependOn(&b.addFail("no cli/*.c sources: nothing to run").step);
    }

    // ---- examples: one program per file, installed ----
    for (example_srcs) |src| {
        const exe = addProgram(cfg, stem(src), &.{src}, lib, false);
        const install = b.addInstallArtifact(exe, .{});
        b.getInstallStep().dependOn(&install.step);
        examples_step.dependOn(&install.step);
    }

    // ---- benchmarks: one program per file, run one after another ----
    var prev_bench: ?*Build.Step = null;
    for (bench_srcs) |src| {
        const exe = addProgram(cfg, stem(src), &.{src}, lib, true);
        const run = b.addRunArtifact(exe);
        run.stdio = .inherit;
        run.setEnvironmentVariable("OPENBLAS_NUM_THREADS", "1");
        if (prev_bench) |p| run.step.dependOn(p); // serialize: timings must not overlap
        prev_bench = &run.step;
        bench_step.dependOn(&run.step);
    }

    // ---- tests ----
    if (test_srcs.len == 0) {
        test_step.dependOn(&b.addFail("no tests/*.c sources: nothing to test").step);
    } else if (sanitize) {
        test_step.dependOn(&addSanitizedTestRun(cfg, sanitize_cc, test_srcs, lib_srcs.items, headers.items).step);
    } else {
        const tests = addTestExe(cfg, test_srcs, lib_srcs.items);
        const run = b.addRunArtifact(tests);
        // Inherit stdio so Criterion's "[====] Synthesis: ..." line is shown; a non-zero
        // exit status fails the step. (expectExitCode would capture and hide the output.)
        run.stdio = .inherit;
        run.addPassthruArgs();
        test_step.dependOn(&run.step);
    }
}

// ---------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------

const ModuleOptions = struct {
    /// Define TG_USE_BLAS=1 when -Dblas=true (library, test and bench compiles).
    blas_macro: bool = false,
    /// null = Zig's per-mode default (UBSan in Debug).
    sanitize_c: ?std.zig.SanitizeC = null,
    pic: ?bool = null,
};

/// A libc-linking C module with the project's include paths: `include/` for
/// tapegrad.h and the project root for `#include "autograd/internal.h"`.
fn cModule(cfg: Config, opts: ModuleOptions) *Module {
    const b = cfg.b;
    const m = b.createModule(.{
        .target = cfg.target,
        .optimize = cfg.optimize,
        .link_libc = true,
        .sanitize_c = opts.sanitize_c,
        .pic = opts.pic,
    });
    m.addIncludePath(b.path("include"));
    m.addIncludePath(b.path("."));
    if (opts.blas_macro and cfg.blas) m.addCMacro("TG_USE_BLAS", "1");
    return m;
}

/// System libraries the library sources need. pkg-config is tried first (that is
/// where cblas.h's include directory comes from), then plain -l.
/// m, dl and pthread are part of glibc's libc set, so for them this only asserts libc.
fn linkLibraryDeps(cfg: Config, m: *Module) void {
    m.linkSystemLibrary("ffi", .{});
    if (cfg.blas) m.linkSystemLibrary("openblas", .{});
    m.linkSystemLibrary("m", .{});
    m.linkSystemLibrary("dl", .{});
    m.linkSystemLibrary("pthread", .{});
}

fn addCSources(m: *Module, srcs: []const []const u8) void {
    m.addCSourceFiles(.{ .files = srcs, .flags = &c_flags });
}

/// libtapegrad.a or libtapegrad.so.0.1.0. These are the installed artifacts, linked
/// by plain gcc/clang users, so they are built without Zig's UBSan instrumentation
/// (which would need Zig's ubsan runtime) and as PIC (gcc links PIE by default).
fn addLibrary(cfg: Config, linkage: std.builtin.LinkMode, srcs: []const []const u8) *Compile {
    const m = cModule(cfg, .{ .blas_macro = true, .sanitize_c = .off, .pic = true });
    addCSources(m, srcs);
    linkLibraryDeps(cfg, m);
    return cfg.b.addLibrary(.{
        .linkage = linkage,
        .name = "tapegrad",
        .root_module = m,
        .version = if (linkage == .dynamic) version else null,
    });
}

/// An executable from `srcs`, linked with the static library and its system libraries.
fn addProgram(cfg: Config, name: []const u8, srcs: []const []const u8, lib: ?*Compile, blas_macro: bool) *Compile {
    const m = cModule(cfg, .{ .blas_macro = blas_macro });
    addCSources(m, srcs);
    if (lib) |l| m.linkLibrary(l);
    linkLibraryDeps(cfg, m);
    return cfg.b.addExecutable(.{ .name = name, .root_module = m });
}

/// ONE Criterion executable from all test files plus the library sources, so tests
/// get the library compiled with the test build's settings (UBSan in Debug).
fn addTestExe(cfg: Config, test_srcs: []const []const u8, lib_srcs: []const []const u8) *Compile {
    const m = cModule(cfg, .{ .blas_macro = true });
    addCSources(m, test_srcs);
    addCSources(m, lib_srcs);
    linkLibraryDeps(cfg, m);
    m.linkSystemLibrary("criterion", .{});
    const exe = cfg.b.addExecutable(.{ .name = "tapegrad-tests", .root_module = m });
    // Criterion discovers tests through its own ELF section at run time. Release modes
    // enable --gc-sections (and LTO would do the same), which drops them: "Tested: 0".
    exe.link_gc_sections = false;
    exe.lto = .none;
    return exe;
}

/// `-Dsanitize=true`: Zig 0.17 has no AddressSanitizer (Module.sanitize_c only covers
/// UBSan; `-fsanitize=address` compiles but Zig ships no ASan runtime to link), so the
/// test executable is compiled and linked by the system C compiler (gcc/clang bring
/// libasan/libubsan), then run. The compile is cached like any Run step: it re-runs
/// when a source, a header, or the command line changes.
fn addSanitizedTestRun(
    cfg: Config,
    cc: []const u8,
    test_srcs: []const []const u8,
    lib_srcs: []const []const u8,
    headers: []const []const u8,
) *Build.Step.Run {
    const b = cfg.b;
    // pkg-config is asked by the shell at make time, not by build.zig, so the cached
    // configuration stays valid. Libraries must follow the sources on the command line.
    const pkgs = if (cfg.blas) "criterion libffi openblas" else "criterion libffi";
    const compile = b.addSystemCommand(&.{
        "sh", "-c",
        \\set -e
        \\pkgs=$1; out=$2; shift 2
        \\libs=$(pkg-config --cflags --libs $pkgs)
        \\exec "$@" $libs -lm -ldl -lpthread -o "$out"
        ,
        "sh", // $0
        pkgs,
    });
    compile.setName("cc tapegrad-tests (asan+ubsan)");
    const exe = compile.addOutputFileArg("tapegrad-tests-asan");
    compile.addArg(cc);
    compile.addArgs(&c_flags);
    compile.addArgs(&sanitize_flags);
    if (cfg.blas) compile.addArg("-DTG_USE_BLAS=1");
    compile.addPrefixedDirectoryArg("-I", b.path("include"));
    compile.addPrefixedDirectoryArg("-I", b.path("."));
    for (test_srcs) |src| compile.addFileArg(b.path(src));
    for (lib_srcs) |src| compile.addFileArg(b.path(src));
    for (headers) |h| compile.addFileInput(b.path(h));

    const run = b.addRunFile(exe);
    run.setName("run tapegrad-tests (asan+ubsan)");
    run.stdio = .inherit;
    run.addPassthruArgs();
    // Criterion runs each test in a child process; a sanitizer report makes that test
    // crash, which Criterion counts and turns into a non-zero exit status.
    run.setEnvironmentVariable("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    return run;
}

/// lib/pkgconfig/tapegrad.pc, relocatable: the prefix is found from the .pc's own location.
fn pkgConfigFile(cfg: Config) []const u8 {
    return cfg.b.fmt(
        \\prefix=${{pcfiledir}}/../..
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include
        \\
        \\Name: tapegrad
        \\Description: tape-based automatic differentiation in C
        \\Version: {f}
        \\Requires.private: libffi{s}
        \\Cflags: -I${{includedir}}
        \\Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -ltapegrad
        \\Libs.private: -lm -ldl -lpthread
        \\
    , .{ version, if (cfg.blas) " openblas" else "" });
}

// ---------------------------------------------------------------------------
// Configure-time file discovery
// ---------------------------------------------------------------------------

/// Project-relative paths of the files ending in `ext` directly inside `dir`, sorted.
/// A missing directory yields an empty list.
fn glob(b: *Build, dir: []const u8, ext: []const u8) []const []const u8 {
    const io = b.graph.io;
    const arena = b.graph.arena;
    // Re-run configure when entries of `dir` appear or disappear. Zig cannot watch a
    // missing directory (configure fails with FileSystemFailure), so then watch the
    // project root instead, which changes when `dir` is created.
    var d = b.root.openDir(io, dir, .{ .iterate = true }) catch |err| switch (err) {
        error.FileNotFound, error.NotDir => {
            b.dependOnDirectoryContents(b.path("."));
            return &.{};
        },
        else => std.debug.panic("cannot open directory '{s}': {t}", .{ dir, err }),
    };
    defer d.close(io);
    b.dependOnDirectoryContents(b.path(dir));

    var files: std.ArrayList([]const u8) = .empty;
    var it = d.iterate();
    while (it.next(io) catch |err| std.debug.panic("cannot list '{s}': {t}", .{ dir, err })) |entry| {
        if (entry.kind != .file and entry.kind != .sym_link) continue;
        if (!std.mem.endsWith(u8, entry.name, ext)) continue;
        files.append(arena, b.fmt("{s}/{s}", .{ dir, entry.name })) catch @panic("OOM");
    }
    // Directory order is arbitrary; sort for stable command lines (and cache hits).
    std.mem.sort([]const u8, files.items, {}, lessThan);
    return files.items;
}

/// Whether a file exists. Only for files inside a directory that `glob` already
/// watches (Zig cannot watch a missing file).
fn exists(b: *Build, sub_path: []const u8) bool {
    b.root.root_dir.handle.access(b.graph.io, b.pathJoin(&.{ b.root.sub_path, sub_path }), .{}) catch return false;
    return true;
}

fn appendAll(b: *Build, list: *std.ArrayList([]const u8), items: []const []const u8) void {
    list.appendSlice(b.graph.arena, items) catch @panic("OOM");
}

fn lessThan(_: void, a: []const u8, b: []const u8) bool {
    return std.mem.lessThan(u8, a, b);
}

/// "examples/foo.c" -> "foo"
fn stem(path: []const u8) []const u8 {
    return std.fs.path.stem(path);
}
