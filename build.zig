//! Build script for tapegrad (C11), written for Zig 0.17.
//!
//!   zig build [install]        libtapegrad.a, libtapegrad.so.0.1.0 (+ .so.0/.so symlinks),
//!                              include/tapegrad.h, lib/pkgconfig/tapegrad.pc (shared) and
//!                              tapegrad-static.pc (the archive, whole), bin/tapegrad (cli/*.c);
//!                              ReleaseFast unless -Doptimize says otherwise
//!   zig build test [-- ARGS]   Criterion suite (tests/*.c + library sources); ARGS go to
//!                              Criterion, e.g. `zig build test -- --filter 'ops/*'`
//!   zig build run [-- ARGS]    build and run bin/tapegrad ARGS; without ARGS `tapegrad study`
//!   zig build bench            build and run every bench/<stem>.c, one after another
//!   zig build bench-<x>        build, install (bin/bench_<x>) and run bench/bench_<x>.c alone
//!   zig build examples         build and install the examples: bin/<stem> for each
//!                              examples/<stem>.c, lib/libplugin_<x>.so for examples/plugin_<x>.c
//!                              (not part of the default install: their names are generic)
//!   zig build plugins          build and install the example plugins only
//!   zig build fuzz             build the libFuzzer targets tests/fuzz/fuzz_<x>.c with clang
//!                              (fuzzer, ASan, UBSan) as <prefix>/fuzz/fuzz_<x>; their seed
//!                              inputs are tests/fuzz/corpus/<x>/ (.ci/run runs each briefly)
//!
//!   -Dlinkage=static|dynamic   build only that library (as another project's dependency:
//!                              static, and no bin/tapegrad; see build.zig.zon)
//!   -Dblas=false               our own GEMM only (no TG_USE_BLAS macro: OpenBLAS is never loaded)
//!   -Dsanitize=true            `test` runs the suite under ASan + UBSan (built with the
//!                              system C compiler, see Sanitized): UBSan with every
//!                              check that gcc offers and the code must satisfy (signed
//!                              overflow, shifts, division by zero, bounds and bounds-strict,
//!                              float-cast-overflow, null, alignment, ...; see sanitize_flags),
//!                              each one aborting the test at its first report
//!   -Dmpi=true|false           data-parallel training over Open MPI (mpi/*.c): default on when
//!                              `mpicc` is on the PATH. On: lib/libtapegrad_dist.{a,so},
//!                              include/tapegrad_dist.h, lib/pkgconfig/tapegrad-dist.pc; the cli,
//!                              the tests, examples/ddp_*.c and bench/bench_dist*.c get it
//!                              (TG_HAVE_MPI=1); off: none of those, and libtapegrad never needs MPI
//!   -Doptimize=Debug|ReleaseSafe|ReleaseFast|ReleaseSmall
//!
//! Plugins are shared libraries that a program dlopen()s and that call back into the
//! tapegrad functions of that program; they do not link libtapegrad themselves (their
//! tg_* references stay undefined until dlopen). So every program here (cli, examples,
//! bench, tests) is linked with --export-dynamic and with ALL library objects, not with
//! the archive (which would only pull in the members the program itself references).
//!   examples/plugin_<x>.c  -> lib/libplugin_<x>.so   (installed; not an executable)
//!   tests/plugins/<x>.c    -> <prefix>/test-plugins/lib<x>.so, installed by `test` only,
//!                             together with copies of the example plugins. The test run gets
//!                             TAPEGRAD_TEST_PLUGINS=<absolute path of that directory>.
//!
//! Source lists are globbed (non-recursively) when build.zig runs. Zig 0.17 caches the
//! result of that configure phase, so every globbed directory is registered with
//! `dependOnDirectoryContents`: adding or removing a file re-runs the configure phase.

const std = @import("std");
const Build = std.Build;
const Compile = Build.Step.Compile;
const Module = Build.Module;
const pkgconfig = @import("build/pkgconfig.zig");

const version: std.SemanticVersion = .{ .major = 0, .minor = 1, .patch = 0 };

/// Directories whose `*.c` files (directly inside, no recursion) make up the library.
const lib_dirs = [_][]const u8{ "autograd", "ops", "data", "models", "diagnostics" };

/// Where `test` installs the test plugins (and copies of the example plugins), relative
/// to the install prefix (default: zig-out/test-plugins).
const test_plugins_subdir = "test-plugins";

/// Environment variable through which the test run learns that directory (absolute path).
const test_plugins_env = "TAPEGRAD_TEST_PLUGINS";

/// Flags for every C file, whether compiled by Zig or by the sanitizer build.
/// -ffp-contract=off: no fused multiply-add unless written, so the same seed gives the same
/// numbers on CPUs with and without FMA (clang contracts a*b+c by default for the native CPU).
/// -Wno-psabi: compiled for a target without AVX (the sanitizer and fuzz builds: baseline
/// x86-64), gcc and clang warn at every static helper that takes or returns an 8-float vector
/// that its ABI differs from AVX's; such helpers never cross a file (static, inlined), and the
/// 200 warnings hid the ones that mean something.
const c_flags = [_][]const u8{ "-std=c11", "-Wall", "-Wextra", "-Wno-psabi", "-D_POSIX_C_SOURCE=200809L", "-ffp-contract=off" };

/// Extra flags of the `-Dsanitize=true` build (system C compiler, gcc 12 on Debian): ASan, and
/// every UBSan check gcc offers that the code must satisfy, each one aborting the process (the
/// test, under Criterion) at its first report: -fsanitize=undefined (signed overflow, shifts,
/// integer division by zero, null, alignment, bounds, object size, pointer overflow, bool/enum
/// loads, nonnull and returns-nonnull attributes, unreachable, vla bounds, builtins) plus the
/// checks it leaves out: float-cast-overflow (a float out of an integer's range, NaN included,
/// cast to it) and bounds-strict (array bounds also for trailing arrays). Not float-divide-by-
/// zero: dividing floats by zero is defined (IEEE 754) and what tg_div of a zero, a NaN trap
/// test or a user's data may ask for on purpose. implicit-conversion is clang's only.
const sanitize_flags = [_][]const u8{
    "-fsanitize=address,undefined,float-cast-overflow,bounds-strict",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
    "-g",
    "-O1",
};

/// Everything the helpers below need to know about this configuration.
const Config = struct {
    b: *Build,
    target: Build.ResolvedTarget,
    optimize: std.builtin.Optimize,
    blas: bool,
    mpi: bool,
};

pub fn build(b: *Build) void {
    const cfg: Config = .{
        .b = b,
        .target = b.standardTargetOptions(.{}),
        // Installed libraries are what users link: optimised unless asked otherwise (a Debug
        // libtapegrad trains 4x slower). Tests pick their own default (ReleaseSafe) below.
        .optimize = b.option(std.builtin.OptimizeMode, "optimize", "Debug, ReleaseSafe, ReleaseFast (default) or ReleaseSmall") orelse .ReleaseFast,
        .blas = b.option(bool, "blas", "Load OpenBLAS at run time (ops/blas.c) and define TG_USE_BLAS=1 (default: true)") orelse true,
        .mpi = b.option(bool, "mpi", "Build the MPI layer mpi/ (default: when mpicc is on the PATH)") orelse
            onPath(b, "mpicc"),
    };
    // A Zig project that depends on tapegrad (build.zig.zon) links one library by name,
    // b.dependency("tapegrad", .{}).artifact("tapegrad"): built as a dependency (pkg_hash is
    // empty for the root project only), tapegrad installs the static library alone (unless
    // -Dlinkage says) and not the tool, whose name would make the lookup ambiguous.
    const as_dependency = b.pkg_hash.len != 0;
    const linkage = b.option(std.builtin.LinkMode, "linkage", "Build only the static or only the shared library (default: both; as a dependency: static)") orelse
        if (as_dependency) std.builtin.LinkMode.static else null;
    const sanitize = b.option(bool, "sanitize", "Run `test` under AddressSanitizer + UBSan (default: false)") orelse false;
    const test_optimize = b.option(std.builtin.OptimizeMode, "test-optimize", "Optimize mode of the test suite (default: ReleaseSafe, or -Doptimize when given)");
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
    const all_example_srcs = glob(b, "examples", ".c");
    const example_srcs = filterPrefix(b, filterPlugins(b, all_example_srcs, false), "ddp_", cfg.mpi);
    const example_plugin_srcs = filterPlugins(b, all_example_srcs, true);
    // The tests drive the tool's commands directly (run_study, run_train): every cli/*.c but
    // the one with main() is compiled into the test executable as well.
    var test_src_list: std.ArrayList([]const u8) = .empty;
    appendAll(b, &test_src_list, glob(b, "tests", ".c"));
    for (cli_srcs) |src| {
        if (!std.mem.eql(u8, src, "cli/main.c")) test_src_list.append(b.graph.arena, src) catch @panic("OOM");
    }
    appendAll(b, &headers, glob(b, "cli", ".h"));
    const test_srcs = test_src_list.items;
    const test_plugin_srcs = glob(b, "tests/plugins", ".c");
    // mpi/ (MPI) is compiled only into programs that use it, never into libtapegrad.
    const dist_srcs: []const []const u8 = if (cfg.mpi) glob(b, "mpi", ".c") else &.{};
    if (cfg.mpi) appendAll(b, &headers, glob(b, "mpi", ".h"));
    const all_bench_srcs = glob(b, "bench", ".c");
    // bench_kann.c needs KANN's source, which bench/kann_chain.sh fetches and builds it with
    const bench_srcs = filterPrefix(b, filterPrefix(b, all_bench_srcs, "bench_kann", false),
                                    "bench_dist", cfg.mpi);
    const dist_check_srcs: []const []const u8 = if (cfg.mpi) glob(b, "tests/mpi", ".c") else &.{};

    const test_step = b.step("test", "Build and run the Criterion test suite (args after -- go to Criterion)");
    const run_step = b.step("run", "Build and run the tapegrad CLI (args after -- are passed on)");
    const bench_step = b.step("bench", "Build and run every benchmark in bench/");
    const examples_step = b.step("examples", "Build and install the examples (programs and plugins)");
    const plugins_step = b.step("plugins", "Build and install the example plugins (examples/plugin_*.c)");
    const fuzz_step = b.step("fuzz", "Build the libFuzzer targets of tests/fuzz/ (needs clang)");

    // ---- library: static + shared, public header, pkg-config file ----
    // Without any library source there is nothing to archive; programs are then
    // built from their own sources only (and fail to link if they need the library).
    // `lib` is what programs link: one relocatable object holding every library source
    // (compiled like the installed libraries), so that every tg_* function is in the
    // program and exported for plugins, whether the program calls it or not.
    const has_header = exists(b, "include/tapegrad.h");
    var shared_lib: ?*Compile = null;
    const lib: ?*Compile = if (lib_srcs.items.len == 0) null else blk: {
        for ([_]std.builtin.LinkMode{ .static, .dynamic }) |mode| {
            if (linkage != null and linkage.? != mode) continue;
            const library = addLibrary(cfg, mode, lib_srcs.items);
            // installed with the library, and on the include path of whatever links it
            if (has_header) library.installHeader(b.path("include/tapegrad.h"), "tapegrad.h");
            b.installArtifact(library);
            if (mode == .dynamic) shared_lib = library;
        }
        break :blk addLibraryObject(cfg, lib_srcs.items);
    };
    // libtapegrad_dist beside it: its own library, so that libtapegrad never links MPI
    const dist_obj: ?*Compile = if (dist_srcs.len == 0 or lib == null or as_dependency) null else blk: {
        b.installArtifact(addDistLibrary(cfg, .static, dist_srcs, null));
        if (shared_lib != null) b.installArtifact(addDistLibrary(cfg, .dynamic, dist_srcs, shared_lib));
        b.getInstallStep().dependOn(&b.addInstallHeaderFile(b.path("include/tapegrad_dist.h"), "tapegrad_dist.h").step);
        const m = cModule(cfg, .{ .sanitize_c = .off, .pic = true, .mpi = true });
        addCSources(m, dist_srcs);
        break :blk b.addObject(.{ .name = "tapegrad-dist", .root_module = m });
    };
    const pc_files = b.addWriteFiles();
    const pc = pc_files.add("tapegrad.pc", pkgconfig.plain(b, version));
    b.getInstallStep().dependOn(&b.addInstallLibFile(pc, "pkgconfig/tapegrad.pc").step);
    const pc_static = pc_files.add("tapegrad-static.pc", pkgconfig.static(b, version));
    b.getInstallStep().dependOn(&b.addInstallLibFile(pc_static, "pkgconfig/tapegrad-static.pc").step);
    if (dist_obj != null) {
        const pc_dist = pc_files.add("tapegrad-dist.pc", pkgconfig.dist(b, version));
        b.getInstallStep().dependOn(&b.addInstallLibFile(pc_dist, "pkgconfig/tapegrad-dist.pc").step);
    }

    // ---- cli ----
    var cli_exe: ?*Compile = null;
    if (cli_srcs.len > 0 and !as_dependency) {
        const cli = addProgram(cfg, "tapegrad", cli_srcs, lib, false);
        addDist(cli, dist_obj);
        cli_exe = cli;
        // `tapegrad --version` says how it was built
        cli.root_module.addCMacro("TG_BUILD_MODE", b.fmt("\"{s} (zig build -Doptimize)\"", .{optimizeName(cfg.optimize)}));
        b.installArtifact(cli);
        // Bare `tapegrad` only prints a usage; `zig build run` with no arguments runs the study
        // (the passthru arguments are known when the build runs, not here: a shell decides).
        const run = b.addSystemCommand(&.{ "sh", "-c", "[ $# -gt 1 ] || set -- \"$1\" study; exec \"$@\"", "sh" });
        run.addArtifactArg(cli);
        run.stdio = .inherit;
        run.addPassthruArgs();
        run_step.dependOn(&run.step);
    } else {
        run_step.dependOn(&b.addFail("no cli/*.c sources: nothing to run").step);
    }

    // ---- examples: one program per file, installed by `zig build examples` ----
    for (example_srcs) |src| {
        const exe = addProgram(cfg, stem(src), &.{src}, lib, false);
        if (std.mem.startsWith(u8, stem(src), "ddp_")) addDist(exe, dist_obj);
        examples_step.dependOn(&b.addInstallArtifact(exe, .{}).step);
    }

    // ---- plugins: examples/plugin_<x>.c -> lib/libplugin_<x>.so; tests/plugins/<x>.c ->
    // <prefix>/test-plugins/lib<x>.so (installed by `test` only, with copies of the former) ----
    const test_plugins_dir: Build.LazyPath = .{ .relative = .{ .base = .install_prefix, .sub_path = test_plugins_subdir } };
    var test_plugin_installs: std.ArrayList(*Build.Step) = .empty;
    for (example_plugin_srcs) |src| {
        const plugin = addPlugin(cfg, src);
        const install = b.addInstallArtifact(plugin, .{});
        examples_step.dependOn(&install.step);
        plugins_step.dependOn(&install.step);
        appendStep(b, &test_plugin_installs, &installTestPlugin(b, plugin).step);
    }
    for (test_plugin_srcs) |src| {
        if (pluginNameClash(example_plugin_srcs, src)) |other| {
            appendStep(b, &test_plugin_installs, &b.addFail(b.fmt(
                "{s} and {s} would both install {s}/lib{s}.so: rename one",
                .{ src, other, test_plugins_subdir, stem(src) },
            )).step);
            continue;
        }
        appendStep(b, &test_plugin_installs, &installTestPlugin(b, addPlugin(cfg, src)).step);
    }
    // tests/mpi/<x>.c: programs that tests/test_dist.c starts under mpirun, installed beside
    // the test plugins (<prefix>/test-plugins/<x>), found through the same variable
    // (with -Dsanitize=true built by the system cc with ASan + UBSan, like the suite)
    // The sanitizer build compiles every source once, one step each (so the cores share the
    // work and an edit recompiles one file), and links the test programs from the objects.
    const sanitized: ?Sanitized = if (!sanitize) null else blk: {
        var srcs: std.ArrayList([]const u8) = .empty;
        appendAll(b, &srcs, lib_srcs.items);
        appendAll(b, &srcs, dist_srcs);
        break :blk .{ .cfg = cfg, .cc = sanitize_cc, .headers = headers.items,
                      .lib_objs = sanitizedObjects(cfg, sanitize_cc, srcs.items, headers.items) };
    };
    for (dist_check_srcs) |src| {
        if (sanitized) |z| {
            const exe = z.link(stem(src), "libffi jansson zlib ompi-c", &.{src});
            appendStep(b, &test_plugin_installs, &b.addInstallFileWithDir(exe, .{ .custom = test_plugins_subdir }, stem(src)).step);
            continue;
        }
        const exe = addProgram(cfg, stem(src), &.{src}, lib, false);
        addDist(exe, dist_obj);
        appendStep(b, &test_plugin_installs, &installTestPlugin(b, exe).step);
    }
    // and the tool itself, which tests/test_dist.c runs as `mpirun -np 2 tapegrad train`
    if (dist_check_srcs.len > 0) {
        if (cli_exe) |cli| appendStep(b, &test_plugin_installs, &installTestPlugin(b, cli).step);
    }

    // ---- benchmarks: one program per file, run one after another ----
    var prev_bench: ?*Build.Step = null;
    for (bench_srcs) |src| {
        const exe = addProgram(cfg, stem(src), &.{src}, lib, true);
        if (std.mem.startsWith(u8, stem(src), "bench_dist")) addDist(exe, dist_obj);
        const run = b.addRunArtifact(exe);
        run.stdio = .inherit;
        run.addPassthruArgs();
        if (prev_bench) |p| run.step.dependOn(p); // serialize: timings must not overlap
        prev_bench = &run.step;
        bench_step.dependOn(&run.step);
        // `zig build bench-models` runs bench/bench_models.c alone; the binary is installed too
        const one = b.addRunArtifact(exe);
        one.stdio = .inherit;
        one.addPassthruArgs();
        const name = stem(src);
        const short = if (std.mem.startsWith(u8, name, "bench_")) name["bench_".len..] else name;
        const one_step = b.step(b.fmt("bench-{s}", .{short}), b.fmt("Build and run {s} alone", .{src}));
        one_step.dependOn(&one.step);
        one_step.dependOn(&b.addInstallArtifact(exe, .{}).step);
    }

    // ---- tests ----
    if (test_srcs.len == 0) {
        test_step.dependOn(&b.addFail("no tests/*.c sources: nothing to test").step);
    } else {
        const run = addTestRun(b, test_plugins_dir, test_plugin_installs.items);
        if (sanitize) {
            run.setName("run tapegrad-tests (asan+ubsan)");
            const pkgs = if (cfg.mpi) "criterion libffi jansson zlib ompi-c" else "criterion libffi jansson zlib";
            run.addFileArg(sanitized.?.link("tapegrad-tests-asan", pkgs, test_srcs));
            // Criterion runs each test in a child process; a sanitizer report makes that test
            // crash, which Criterion counts and turns into a non-zero exit status.
            run.setEnvironmentVariable("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
            // the one leak of Criterion's own runner (tests/lsan.supp says when); ours still count
            run.setEnvironmentVariable("LSAN_OPTIONS", "suppressions=tests/lsan.supp"); // run from the build root
        } else {
            // The suite trains small models end to end: unoptimised (Debug) that takes minutes.
            // ReleaseSafe keeps Zig's UBSan traps and takes seconds; -Dtest-optimize (or an
            // explicit -Doptimize) overrides, and -Dsanitize=true adds ASan at -O1.
            var test_cfg = cfg;
            test_cfg.optimize = test_optimize orelse
                if (b.user_input_options.contains("optimize")) cfg.optimize else .ReleaseSafe;
            run.setName("run tapegrad-tests");
            run.addArtifactArg(addTestExe(test_cfg, test_srcs, lib_srcs.items, dist_srcs));
        }
        run.addPassthruArgs();
        test_step.dependOn(&run.step);
    }

    // ---- fuzzing: tests/fuzz/fuzz_<x>.c -> <prefix>/fuzz/fuzz_<x> ----
    var fuzz_lib_srcs: std.ArrayList([]const u8) = .empty;
    appendAll(b, &fuzz_lib_srcs, lib_srcs.items);
    for (cli_srcs) |src| { // the cli target drives run_train; main.c would clash with libFuzzer's main
        if (!std.mem.eql(u8, src, "cli/main.c")) fuzz_lib_srcs.append(b.graph.arena, src) catch @panic("OOM");
    }
    appendAll(b, &headers, glob(b, "tests/fuzz", ".h"));
    addFuzzTargets(cfg, fuzz_step, glob(b, "tests/fuzz", ".c"), fuzz_lib_srcs.items, headers.items);
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
    /// Open MPI's headers and library, and TG_HAVE_MPI=1 (mpi/ and what uses it).
    mpi: bool = false,
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
        // Zig keeps frame pointers by default; the scalar chain makes ~8 calls per op, and
        // their push/mov/pop was ~6% of its instructions. Debug builds keep them.
        .omit_frame_pointer = cfg.optimize != .debug,
    });
    m.addIncludePath(b.path("include"));
    m.addIncludePath(b.path("."));
    if (opts.blas_macro and cfg.blas) m.addCMacro("TG_USE_BLAS", "1");
    if (opts.mpi) addMpi(m);
    return m;
}

/// System libraries the library sources need. pkg-config is tried first, then plain -l.
/// OpenBLAS is not among them: ops/blas.c dlopen()s it, after choosing its kernels.
/// m, dl and pthread are part of glibc's libc set, so for them this only asserts libc.
fn linkLibraryDeps(m: *Module) void {
    m.linkSystemLibrary("ffi", .{});
    m.linkSystemLibrary("jansson", .{});
    m.linkSystemLibrary("z", .{}); // zlib: gzipped IDX files (data/readers.c)
    m.linkSystemLibrary("m", .{});
    m.linkSystemLibrary("dl", .{});
    m.linkSystemLibrary("pthread", .{});
}

/// Open MPI through pkg-config (ompi-c: its include paths and -lmpi), and the macro that
/// switches on the code that uses mpi/ (the cli's data-parallel train, tests/test_dist.c).
fn addMpi(m: *Module) void {
    m.linkSystemLibrary("ompi-c", .{});
    m.addCMacro("TG_HAVE_MPI", "1");
}

/// A program that uses tapegrad_dist.h: the dist object and Open MPI (when -Dmpi is on).
fn addDist(exe: *Compile, dist_obj: ?*Compile) void {
    const obj = dist_obj orelse return;
    exe.root_module.addObject(obj);
    addMpi(exe.root_module);
}

/// libtapegrad_dist.a or libtapegrad_dist.so.0.1.0 (linked against libtapegrad.so and MPI).
fn addDistLibrary(cfg: Config, linkage: std.builtin.LinkMode, srcs: []const []const u8, core: ?*Compile) *Compile {
    const m = cModule(cfg, .{ .sanitize_c = .off, .pic = true, .mpi = true });
    addCSources(m, srcs);
    if (core) |c| m.linkLibrary(c);
    return cfg.b.addLibrary(.{
        .linkage = linkage,
        .name = "tapegrad_dist",
        .root_module = m,
        .version = if (linkage == .dynamic) version else null,
    });
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
    linkLibraryDeps(m);
    return cfg.b.addLibrary(.{
        .linkage = linkage,
        .name = "tapegrad",
        .root_module = m,
        .version = if (linkage == .dynamic) version else null,
    });
}

/// tapegrad-lib.o: every library source in one relocatable object, compiled exactly like
/// the installed libraries. Programs link this rather than libtapegrad.a: from an archive
/// the linker only takes the members the program references, and a tg_* function that
/// only a plugin calls would then be missing at dlopen time ("undefined symbol").
fn addLibraryObject(cfg: Config, srcs: []const []const u8) *Compile {
    const m = cModule(cfg, .{ .blas_macro = true, .sanitize_c = .off, .pic = true });
    addCSources(m, srcs);
    linkLibraryDeps(m);
    return cfg.b.addObject(.{ .name = "tapegrad-lib", .root_module = m });
}

/// An executable from `srcs`, linked with the whole library (see addLibraryObject) and its
/// system libraries, exporting its symbols to the plugins it may dlopen.
fn addProgram(cfg: Config, name: []const u8, srcs: []const []const u8, lib: ?*Compile, blas_macro: bool) *Compile {
    const m = cModule(cfg, .{ .blas_macro = blas_macro });
    addCSources(m, srcs);
    if (lib) |l| m.addObject(l);
    linkLibraryDeps(m);
    const exe = cfg.b.addExecutable(.{ .name = name, .root_module = m });
    exe.rdynamic = true; // --export-dynamic: plugins' tg_* references resolve against us
    return exe;
}

/// lib<stem>.so (unversioned) from one plugin source. It links libc only: its tg_*
/// references are left undefined and resolved by the dynamic linker against the
/// program that dlopen()s it. Built like the installed libraries (PIC, no UBSan runtime).
fn addPlugin(cfg: Config, src: []const u8) *Compile {
    const m = cModule(cfg, .{ .sanitize_c = .off, .pic = true });
    addCSources(m, &.{src});
    const lib = cfg.b.addLibrary(.{ .linkage = .dynamic, .name = stem(src), .root_module = m });
    lib.linker_allow_shlib_undefined = true;
    return lib;
}

/// Installs a plugin into <prefix>/test-plugins/ (not part of the default install).
fn installTestPlugin(b: *Build, plugin: *Compile) *Build.Step.InstallArtifact {
    return b.addInstallArtifact(plugin, .{ .dest_dir = .{ .override = .{ .custom = test_plugins_subdir } } });
}

/// The Run step of the test suite, waiting for the test plugins to be installed and
/// running its command with TAPEGRAD_TEST_PLUGINS=<absolute path of their directory>.
/// Zig 0.17 knows the install prefix only when the build runs (--prefix is not part of
/// the cached configuration), and setEnvironmentVariable takes a configure-time string,
/// so a shell puts the path (a Run directory argument) into the environment:
///   sh -c '...' sh <plugins dir> <test program> [passthru args...]
/// The caller adds the program and the passthru arguments.
fn addTestRun(b: *Build, plugins_dir: Build.LazyPath, plugin_installs: []const *Build.Step) *Build.Step.Run {
    const run = b.addSystemCommand(&.{
        "sh",
        "-c",
        // TAPEGRAD_BLAS_TUNE=0 (unless set): the fixed table's GEMM kernels, so the suite's
        // numbers never depend on a timing and its runs write no cache file to the home
        // directory (tests/test_blas_choice.c turns tuning on with a cache file of its own)
        "export " ++ test_plugins_env ++ "=\"$1\" TAPEGRAD_BLAS_TUNE=\"${TAPEGRAD_BLAS_TUNE:-0}\"; shift; exec \"$@\"",
        "sh", // $0
    });
    run.addDirectoryArg2(plugins_dir, .{ .make_absolute = true });
    for (plugin_installs) |s| run.step.dependOn(s); // a relative LazyPath carries no dependency
    // Inherit stdio so Criterion's "[====] Synthesis: ..." line is shown; a non-zero
    // exit status fails the step. (expectExitCode would capture and hide the output.)
    run.stdio = .inherit;
    return run;
}

/// ONE Criterion executable from all test files plus the library sources, so tests
/// get the library compiled with the test build's settings (UBSan in Debug).
fn addTestExe(cfg: Config, test_srcs: []const []const u8, lib_srcs: []const []const u8,
              dist_srcs: []const []const u8) *Compile {
    const m = cModule(cfg, .{ .blas_macro = true, .mpi = dist_srcs.len > 0 });
    addCSources(m, test_srcs);
    addCSources(m, lib_srcs);
    addCSources(m, dist_srcs);
    linkLibraryDeps(m);
    m.linkSystemLibrary("criterion", .{});
    const exe = cfg.b.addExecutable(.{ .name = "tapegrad-tests", .root_module = m });
    exe.rdynamic = true; // export tg_* to the plugins the tests dlopen
    // Criterion discovers tests through its own ELF section at run time. Release modes
    // enable --gc-sections (and LTO would do the same), which drops them: "Tested: 0".
    exe.link_gc_sections = false;
    exe.lto = .none;
    return exe;
}

/// `-Dsanitize=true`: Zig 0.17 has no AddressSanitizer (Module.sanitize_c only covers UBSan;
/// `-fsanitize=address` compiles but Zig ships no ASan runtime to link), so the test programs
/// are compiled and linked by the system C compiler (gcc/clang bring libasan/libubsan): every
/// library source once into lib_objs, then each program (the suite, and tests/mpi/dist_check
/// so that the mpirun children are sanitized too) linked from them and its own sources. Each
/// step is cached like any Run step: it re-runs when its source, a header or its command changes.
const Sanitized = struct {
    cfg: Config,
    cc: []const u8,
    headers: []const []const u8,
    lib_objs: []const Build.LazyPath,

    /// pkgs: what the program links (dist_check must not link Criterion, whose constructors
    /// would take over the mpirun children).
    fn link(z: Sanitized, name: []const u8, pkgs: []const u8, srcs: []const []const u8) Build.LazyPath {
        const b = z.cfg.b;
        // pkg-config is asked by the shell at make time, not by build.zig, so the cached
        // configuration stays valid. Libraries must follow the objects on the command line.
        const cmd = b.addSystemCommand(&.{
            "sh", "-c",
            \\set -e
            \\pkgs=$1; out=$2; shift 2
            \\libs=$(pkg-config --libs $pkgs)
            \\exec "$@" $libs -lm -ldl -lpthread -o "$out"
            ,
            "sh", // $0
            pkgs,
        });
        cmd.setName(b.fmt("link {s} (asan+ubsan)", .{name}));
        const exe = cmd.addOutputFileArg(name);
        cmd.addArg(z.cc);
        cmd.addArgs(&sanitize_flags);
        cmd.addArg("-rdynamic"); // export tg_* to the plugins the tests dlopen
        for (sanitizedObjects(z.cfg, z.cc, srcs, z.headers)) |obj| cmd.addFileArg(obj);
        for (z.lib_objs) |obj| cmd.addFileArg(obj);
        return exe;
    }
};

/// One compile step a source, `cc -c`, with the flags of every package the tests use.
fn sanitizedObjects(cfg: Config, cc: []const u8, srcs: []const []const u8, headers: []const []const u8) []const Build.LazyPath {
    const b = cfg.b;
    const objs = b.allocator.alloc(Build.LazyPath, srcs.len) catch @panic("OOM");
    const pkgs = if (cfg.mpi) "criterion libffi jansson zlib ompi-c" else "criterion libffi jansson zlib";
    for (srcs, objs) |src, *obj| {
        const cmd = b.addSystemCommand(&.{
            "sh", "-c",
            \\set -e
            \\pkgs=$1; out=$2; shift 2
            \\exec "$@" $(pkg-config --cflags $pkgs) -c -o "$out"
            ,
            "sh", // $0
            pkgs,
        });
        cmd.setName(b.fmt("cc {s} (asan+ubsan)", .{src}));
        obj.* = cmd.addOutputFileArg(b.fmt("{s}.o", .{stem(src)}));
        cmd.addArg(cc);
        cmd.addArgs(&c_flags);
        cmd.addArgs(&sanitize_flags);
        if (cfg.blas) cmd.addArg("-DTG_USE_BLAS=1");
        if (cfg.mpi) cmd.addArg("-DTG_HAVE_MPI=1");
        cmd.addPrefixedDirectoryArg("-I", b.path("include"));
        cmd.addPrefixedDirectoryArg("-I", b.path("."));
        cmd.addFileArg(b.path(src));
        for (headers) |h| cmd.addFileInput(b.path(h));
    }
    return objs;
}

/// `zig build fuzz`: libFuzzer comes with clang (-fsanitize=fuzzer), not with Zig, so, as for
/// -Dsanitize=true, the system's clang compiles: the library (and cli) sources once into an
/// archive, instrumented for coverage, then each target linked with it. Without clang the step
/// fails saying so (nothing else depends on it); the shell looks for it when the step runs, so
/// the cached configuration does not depend on the machine.
fn addFuzzTargets(cfg: Config, step: *Build.Step, targets: []const []const u8, srcs: []const []const u8,
                  headers: []const []const u8) void {
    const b = cfg.b;
    const clang = "clang";
    // clang's -fsanitize=undefined already holds float-cast-overflow; every report aborts
    const flags = [_][]const u8{ "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1" };
    const archive_cmd = b.addSystemCommand(&.{
        "sh", "-c",
        \\set -e
        \\out=$1; cc=$2; shift 2
        \\command -v "$cc" >/dev/null || { echo "zig build fuzz: $cc (libFuzzer) not found" >&2; exit 1; }
        \\flags=; while [ "$1" != -- ]; do flags="$flags $1"; shift; done; shift
        \\tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
        \\# one compiler a core; objects named by path: ops/attention.c and models/attention.c both stay
        \\export cc flags tmp pkgflags="$(pkg-config --cflags libffi jansson zlib)"
        \\printf '%s\n' "$@" | xargs -n 1 -P "$(nproc 2>/dev/null || echo 2)" sh -c \
        \\    'obj=$(printf %s "${1#./}" | tr / _); $cc $flags $pkgflags -c "$1" -o "$tmp/${obj%.c}.o"' sh
        \\rm -f "$out"; ar rcs "$out" "$tmp"/*.o
        ,
        "sh", // $0
    });
    archive_cmd.setName("clang tapegrad-fuzz.a");
    const archive = archive_cmd.addOutputFileArg("libtapegrad-fuzz.a");
    archive_cmd.addArg(clang);
    addFuzzFlags(cfg, archive_cmd, &flags, "-fsanitize=fuzzer-no-link");
    archive_cmd.addArg("--");
    for (srcs) |src| archive_cmd.addFileArg(b.path(src));
    for (headers) |h| archive_cmd.addFileInput(b.path(h));
    for (targets) |target| {
        const link = b.addSystemCommand(&.{
            "sh", "-c",
            \\set -e
            \\out=$1; shift
            \\exec "$@" $(pkg-config --cflags --libs libffi jansson zlib) -lm -ldl -lpthread -o "$out"
            ,
            "sh", // $0
        });
        link.setName(b.fmt("clang {s}", .{stem(target)}));
        const exe = link.addOutputFileArg(stem(target));
        link.addArg(clang);
        addFuzzFlags(cfg, link, &flags, "-fsanitize=fuzzer");
        link.addFileArg(b.path(target));
        link.addFileArg(archive);
        for (headers) |h| link.addFileInput(b.path(h));
        step.dependOn(&b.addInstallFileWithDir(exe, .{ .custom = "fuzz" }, stem(target)).step);
    }
}

fn addFuzzFlags(cfg: Config, run: *Build.Step.Run, flags: []const []const u8, fuzzer: []const u8) void {
    run.addArgs(&c_flags);
    run.addArgs(flags);
    run.addArg(fuzzer);
    if (cfg.blas) run.addArg("-DTG_USE_BLAS=1");
    run.addPrefixedDirectoryArg("-I", cfg.b.path("include"));
    run.addPrefixedDirectoryArg("-I", cfg.b.path("."));
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
    // missing directory (configure fails with FileSystemFailure), so then watch its
    // nearest existing ancestor instead (at worst the project root), which changes
    // when `dir` (or the first missing directory on its path) is created.
    var d = b.root.openDir(io, dir, .{ .iterate = true }) catch |err| switch (err) {
        error.FileNotFound, error.NotDir => {
            var parent = std.fs.path.dirname(dir);
            while (parent) |p| : (parent = std.fs.path.dirname(p)) {
                var pd = b.root.openDir(io, p, .{}) catch continue;
                pd.close(io);
                b.dependOnDirectoryContents(b.path(p));
                return &.{};
            }
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

/// Whether `name` is in a directory of the PATH. Each directory searched is watched, so that
/// installing the program (`setup.sh` putting mpicc into /usr/bin) re-runs the configure phase;
/// b.findProgram would instead make every build re-run it.
fn onPath(b: *Build, name: []const u8) bool {
    const io = b.graph.io;
    const path = b.graph.environ_map.get("PATH") orelse return false;
    var found = false;
    var it = std.mem.tokenizeScalar(u8, path, ':');
    while (it.next()) |dir| {
        if (!std.fs.path.isAbsolute(dir)) continue;
        var d = std.Io.Dir.cwd().openDir(io, dir, .{}) catch continue;
        defer d.close(io);
        b.dependOnDirectoryContents(.{ .cwd_relative = dir });
        if (d.access(io, name, .{})) |_| found = true else |_| {}
    }
    return found;
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

/// The plugin sources (`plugin_*.c`) of `srcs` if `want`, else the other ones.
fn filterPlugins(b: *Build, srcs: []const []const u8, want: bool) []const []const u8 {
    var out: std.ArrayList([]const u8) = .empty;
    for (srcs) |src| {
        if (std.mem.startsWith(u8, std.fs.path.basename(src), "plugin_") == want) {
            out.append(b.graph.arena, src) catch @panic("OOM");
        }
    }
    return out.items;
}

/// The example plugin that would install under the same file name as test plugin `src`.
fn pluginNameClash(example_plugins: []const []const u8, src: []const u8) ?[]const u8 {
    for (example_plugins) |other| {
        if (std.mem.eql(u8, stem(other), stem(src))) return other;
    }
    return null;
}

fn appendStep(b: *Build, list: *std.ArrayList(*Build.Step), step: *Build.Step) void {
    list.append(b.graph.arena, step) catch @panic("OOM");
}

/// The -Doptimize spelling of a mode (Zig 0.17's tags are debug, safe, fast, small).
fn optimizeName(mode: std.builtin.OptimizeMode) []const u8 {
    return switch (mode) {
        .Debug => "Debug",
        .ReleaseSafe => "ReleaseSafe",
        .ReleaseFast => "ReleaseFast",
        .ReleaseSmall => "ReleaseSmall",
    };
}

/// The sources of `srcs` whose file name starts with `prefix` only if `keep`; the others always.
fn filterPrefix(b: *Build, srcs: []const []const u8, prefix: []const u8, keep: bool) []const []const u8 {
    var out: std.ArrayList([]const u8) = .empty;
    for (srcs) |src| {
        if (keep or !std.mem.startsWith(u8, std.fs.path.basename(src), prefix)) {
            out.append(b.graph.arena, src) catch @panic("OOM");
        }
    }
    return out.items;
}

/// "examples/foo.c" -> "foo"
fn stem(path: []const u8) []const u8 {
    return std.fs.path.stem(path);
}
