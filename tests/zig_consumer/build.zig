//! A program that depends on tapegrad through build.zig.zon: `zig build run` here builds
//! tapegrad as a package (its static library and header) and a C program linked with it.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const tapegrad = b.dependency("tapegrad", .{ .target = target, .optimize = optimize });
    const m = b.createModule(.{ .target = target, .optimize = optimize, .link_libc = true });
    m.addCSourceFiles(.{ .files = &.{"main.c"}, .flags = &.{"-std=c11"} });
    m.linkLibrary(tapegrad.artifact("tapegrad")); // the header comes with it
    const exe = b.addExecutable(.{ .name = "consumer", .root_module = m });
    b.installArtifact(exe);
    const run = b.addRunArtifact(exe);
    run.expectStdOutEqual("consumer: w 1 -> 1.994 (y = 2x), loss 0.50 -> 1.9e-05 after 100 steps\n" ++
        "consumer: 8 spirals, 2 parameter tensors\n");
    b.step("run", "Build and run the consumer").dependOn(&run.step);
}
