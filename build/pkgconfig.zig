//! The pkg-config files `zig build` installs under lib/pkgconfig (build.zig adds them).
const std = @import("std");

/// lib/pkgconfig/tapegrad.pc, relocatable: the prefix is found from the .pc's own location.
pub fn plain(b: *std.Build, version: std.SemanticVersion) []const u8 {
    return b.fmt(
        \\prefix=${{pcfiledir}}/../..
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include
        \\
        \\Name: tapegrad
        \\Description: tape-based automatic differentiation in C
        \\Version: {f}
        \\Requires.private: libffi jansson zlib
        \\Cflags: -I${{includedir}}
        \\Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -ltapegrad
        \\Libs.private: -lm -ldl -lpthread
        \\
    , .{version});
}

/// lib/pkgconfig/tapegrad-dist.pc: libtapegrad_dist with libtapegrad and Open MPI.
pub fn dist(b: *std.Build, version: std.SemanticVersion) []const u8 {
    return b.fmt(
        \\prefix=${{pcfiledir}}/../..
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include
        \\
        \\Name: tapegrad-dist
        \\Description: data-parallel training for tapegrad over MPI
        \\Version: {f}
        \\Requires: tapegrad ompi-c
        \\Cflags: -I${{includedir}}
        \\Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -ltapegrad_dist
        \\
    , .{version});
}

/// lib/pkgconfig/tapegrad-static.pc: links libtapegrad.a whole (a plugin may call any tg_*
/// function, and from an archive the linker takes only what the program itself references)
/// and exports the program's symbols to the plugins it loads. `pkg-config --libs
/// tapegrad-static` is all a static build needs (tapegrad.pc would pick libtapegrad.so).
pub fn static(b: *std.Build, version: std.SemanticVersion) []const u8 {
    return b.fmt(
        \\prefix=${{pcfiledir}}/../..
        \\libdir=${{prefix}}/lib
        \\includedir=${{prefix}}/include
        \\
        \\Name: tapegrad-static
        \\Description: tape-based automatic differentiation in C, linked statically
        \\Version: {f}
        \\Requires: libffi jansson zlib
        \\Cflags: -I${{includedir}}
        \\Libs: -Wl,--whole-archive ${{libdir}}/libtapegrad.a -Wl,--no-whole-archive -Wl,--export-dynamic -lm -ldl -lpthread
        \\
    , .{version});
}
