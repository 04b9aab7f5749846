//! Compiles `bpf/sensor.bpf.c` with the system's clang into `$OUT_DIR/sensor.bpf.o`, which
//! the library embeds. CO-RE: the object carries BTF relocations and no kernel headers are
//! needed, only libbpf's helper headers and the UAPI headers (`libbpf-dev`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/sensor.bpf.c";
const CLANGS: [&str; 5] = ["clang-19", "clang-18", "clang-17", "clang-16", "clang"];
const INSTALL_HINT: &str = "apt-get install clang-19 libbpf-dev";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");

    // The syscall numbers and pt_regs fields the program reads are x86_64's.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" {
        fail(&format!("riposte-sensor's BPF program supports x86_64 only (target is {arch})"));
    }

    let clang = find_clang().unwrap_or_else(|| {
        fail(&format!("no clang found ($CLANG unset and none of {} on PATH): {INSTALL_HINT}", CLANGS.join(", ")))
    });
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("sensor.bpf.o");
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Werror"])
        // The UAPI headers (<asm/types.h>) live under the multiarch directory on Debian.
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| fail(&format!("running {}: {e}: {INSTALL_HINT}", clang.display())));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("file not found") {
            format!(" (missing headers? {INSTALL_HINT})")
        } else {
            String::new()
        };
        fail(&format!("{} failed to compile {SOURCE}{hint}:\n{stderr}", clang.display()));
    }
}

fn find_clang() -> Option<PathBuf> {
    if let Some(clang) = env::var_os("CLANG").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(clang));
    }
    let path = env::var_os("PATH")?;
    CLANGS.iter().find_map(|name| env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
