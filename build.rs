//! Compiles every `bpf/*.bpf.c` into a libbpf skeleton in $OUT_DIR.
use std::env;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH is set by cargo");
    // <linux/bpf.h> includes <asm/types.h>, which lives in Debian's multiarch
    // directory; clang -target bpf does not search it on its own.
    let multiarch = match arch.as_str() {
        "x86_64" => "/usr/include/x86_64-linux-gnu",
        "aarch64" => "/usr/include/aarch64-linux-gnu",
        other => panic!("unsupported target architecture {other}"),
    };
    println!("cargo:rerun-if-changed=bpf");
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ exists")
        .map(|e| e.expect("readable bpf/ entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for src in sources {
        let stem = src.file_name().and_then(|n| n.to_str()).expect("utf-8 name").trim_end_matches(".bpf.c").to_string();
        let skel = out_dir.join(format!("{stem}.skel.rs"));
        SkeletonBuilder::new()
            .source(&src)
            .clang_args(["-I", multiarch, "-I", "bpf", "-Wall", "-Werror", "-O2"])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("compiling {}: {e:#}", src.display()));
    }
}
