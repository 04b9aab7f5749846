//! Test images built on this machine, since no image registry is reachable: docker-archive
//! tars (what `docker save` writes and `ctr images import` reads), cached under
//! `riposte::local::cache_dir()/images` and tagged by what they are made of, so a changed
//! recipe or input makes a new image and an unchanged one is never rebuilt.
//!
//! - `riposte.test/pause:<tag>`: the sandbox image, a static Go program (`tests/node/cmd/pause`);
//! - `riposte.test/busybox:<tag>`: Debian's busybox-static with its applets, and `netcheck`
//!   (`tests/node/cmd/netcheck`), which serves and probes TCP and UDP ports;
//! - `riposte.test/debian:<tag>`: a minbase Debian rootfs from debootstrap with bash, curl,
//!   python3 and netcat, for realistic attack scenarios.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::host::run;

/// An image as a docker-archive tar, and the reference it is imported under.
#[derive(Clone, Debug)]
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
}

/// What goes into the Debian image: the suite and the packages beside minbase.
const DEBIAN_SUITE: &str = "bookworm";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
const DEBIAN_PACKAGES: &[&str] =
    &["bash", "curl", "ca-certificates", "python3", "netcat-openbsd", "iproute2", "procps", "iputils-ping"];

fn images_dir() -> PathBuf {
    riposte::local::cache_dir().join("images")
}

/// Holds the image cache's lock while building: test processes running at once build an
/// image once.
fn locked<T>(build: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let dir = images_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(|e| format!("cannot create the image lock: {e}"))?;
    lock.lock().map_err(|e| format!("cannot lock the image cache: {e}"))?;
    build()
}

/// The first 16 hex digits of the SHA-256 of `parts`, each a file or a literal string.
fn key(files: &[&Path], literals: &[&str]) -> Result<String, String> {
    let mut text = String::new();
    for file in files {
        text.push_str(run("sha256sum", &[&file.display().to_string()])?.split_whitespace().next().unwrap_or(""));
    }
    text.push_str(&literals.join("\n"));
    let digest = super::host::run_with_input("sha256sum", &[], &text)?;
    Ok(digest[..16].to_owned())
}

/// Builds `tests/node`'s Go programs (pause, netcheck) unless cached; returns their directory.
pub fn test_programs() -> Result<PathBuf, String> {
    let source = crate::repo_path("tests/node");
    let files = ["go.mod", "cmd/pause/main.go", "cmd/netcheck/main.go"].map(|f| source.join(f));
    let go_version = run("go", &["version"])?;
    let dir = riposte::local::cache_dir()
        .join("tools")
        .join(format!("test-programs-{}", key(&files.each_ref().map(|f| f.as_path()), &[&go_version])?));
    if dir.join("pause").exists() && dir.join("netcheck").exists() {
        return Ok(dir);
    }
    locked(|| {
        if dir.join("pause").exists() && dir.join("netcheck").exists() {
            return Ok(dir.clone());
        }
        eprintln!("riposte node: building the test programs pause and netcheck (first time only)");
        let partial = dir.with_extension("partial");
        let output = std::process::Command::new("go")
            .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
            .arg(format!("{}/", partial.display()))
            .arg("./cmd/...")
            .current_dir(&source)
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .output()
            .map_err(|e| format!("cannot run go (is Go installed?): {e}"))?;
        if !output.status.success() {
            return Err(format!("building tests/node/cmd failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(|e| format!("cannot move the test programs into place: {e}"))?;
        Ok(dir.clone())
    })
}

/// `riposte.test/pause:<tag>`.
pub fn pause(programs: &Path) -> Result<Image, String> {
    let pause = programs.join("pause");
    let tag = key(&[&pause], &["pause"])?;
    cached("pause", &tag, |rootfs| {
        copy_executable(&pause, &rootfs.join("pause"))?;
        Ok(json!({ "Entrypoint": ["/pause"] }))
    })
}

/// `riposte.test/busybox:<tag>`: busybox-static, a link for each applet, and netcheck.
pub fn busybox(programs: &Path) -> Result<Image, String> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err("/bin/busybox is missing: install Debian's busybox-static (tests/run.sh does)".into());
    }
    let netcheck = programs.join("netcheck");
    let tag = key(&[busybox, &netcheck], &["busybox"])?;
    cached("busybox", &tag, |rootfs| {
        for dir in ["bin", "etc", "root", "tmp", "proc", "sys", "dev", "var"] {
            std::fs::create_dir_all(rootfs.join(dir)).map_err(|e| format!("cannot create {dir}: {e}"))?;
        }
        set_mode(&rootfs.join("tmp"), 0o1777)?;
        copy_executable(busybox, &rootfs.join("bin/busybox"))?;
        copy_executable(&netcheck, &rootfs.join("bin/netcheck"))?;
        for applet in run("/bin/busybox", &["--list"])?.lines().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .map_err(|e| format!("cannot link applet {applet}: {e}"))?;
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .and_then(|()| std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n"))
        .map_err(|e| format!("cannot write /etc/passwd: {e}"))?;
        Ok(json!({ "Env": ["PATH=/bin"], "Cmd": ["sh"] }))
    })
}

/// `riposte.test/debian:<tag>`: debootstrap's minbase of [`DEBIAN_SUITE`] with
/// [`DEBIAN_PACKAGES`]. Takes a few minutes the first time (it downloads the packages).
pub fn debian() -> Result<Image, String> {
    let tag = format!("{DEBIAN_SUITE}-{}", key(&[], &[DEBIAN_SUITE, DEBIAN_MIRROR, &DEBIAN_PACKAGES.join(",")])?);
    cached("debian", &tag, |rootfs| {
        if run("sh", &["-c", "command -v debootstrap"]).is_err() {
            return Err("debootstrap is missing: install Debian's debootstrap (tests/run.sh does)".into());
        }
        eprintln!("riposte node: building riposte.test/debian:{tag} with debootstrap (first time only; a few minutes)");
        let log = images_dir().join("debootstrap.log");
        let output = std::process::Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={}", DEBIAN_PACKAGES.join(",")), DEBIAN_SUITE])
            .arg(rootfs)
            .arg(DEBIAN_MIRROR)
            .output()
            .map_err(|e| format!("cannot run debootstrap: {e}"))?;
        let _ = std::fs::write(&log, [output.stdout.as_slice(), output.stderr.as_slice()].concat());
        if !output.status.success() {
            return Err(format!(
                "debootstrap failed ({}); the end of {}:\n{}",
                output.status,
                log.display(),
                riposte::local::tail_of(&log, 20)
            ));
        }
        // Downloaded packages and indexes are of no use in the image.
        for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            let _ = run("find", &[&rootfs.join(dir).display().to_string(), "-type", "f", "-delete"]);
        }
        Ok(json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        }))
    })
}

/// The cached image `riposte.test/<name>:<tag>`, or a new one whose rootfs `fill` makes
/// (returning the image's `config`: Env, Entrypoint, Cmd).
fn cached(
    name: &str,
    tag: &str,
    fill: impl FnOnce(&Path) -> Result<serde_json::Value, String>,
) -> Result<Image, String> {
    let reference = format!("riposte.test/{name}:{tag}");
    let archive = images_dir().join(format!("{name}-{tag}.tar"));
    if archive.exists() {
        return Ok(Image { reference, archive });
    }
    locked(|| {
        if archive.exists() {
            return Ok(());
        }
        let work = images_dir().join(format!("{name}-{tag}.build"));
        let _ = std::fs::remove_dir_all(&work);
        let rootfs = work.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
        let config = fill(&rootfs)?;
        docker_archive(&reference, &rootfs, config, &work, &archive)?;
        std::fs::remove_dir_all(&work).map_err(|e| format!("cannot remove {}: {e}", work.display()))
    })?;
    Ok(Image { reference, archive })
}

/// Writes a one-layer docker archive of `rootfs` to `out`: `manifest.json`, the image
/// config named by its digest, and the layer, whose digest the config lists.
fn docker_archive(
    reference: &str,
    rootfs: &Path,
    config: serde_json::Value,
    work: &Path,
    out: &Path,
) -> Result<(), String> {
    let layer = work.join("layer.tar");
    // GNU tar keeps what a rootfs needs (owners, modes, links, setuid bits); the kernel's
    // filesystems are mounted by the runtime.
    run(
        "tar",
        &[
            "--numeric-owner",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "-C",
            &rootfs.display().to_string(),
            "-cf",
            &layer.display().to_string(),
            ".",
        ],
    )?;
    let diff_id = sha256_file(&layer)?;
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let image_config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created_by": "riposte tests/src/node/images.rs" }],
    });
    let config_file = work.join("config.json");
    std::fs::write(&config_file, image_config.to_string()).map_err(|e| format!("cannot write the config: {e}"))?;
    let config_name = format!("{}.json", sha256_file(&config_file)?);
    std::fs::rename(&config_file, work.join(&config_name)).map_err(|e| format!("cannot name the config: {e}"))?;
    std::fs::create_dir_all(work.join(&diff_id)).map_err(|e| format!("cannot create the layer dir: {e}"))?;
    std::fs::rename(&layer, work.join(&diff_id).join("layer.tar"))
        .map_err(|e| format!("cannot place the layer: {e}"))?;
    let manifest =
        json!([{ "Config": config_name, "RepoTags": [reference], "Layers": [format!("{diff_id}/layer.tar")] }]);
    std::fs::write(work.join("manifest.json"), manifest.to_string())
        .map_err(|e| format!("cannot write the manifest: {e}"))?;
    let partial = out.with_extension("partial");
    run(
        "tar",
        &[
            "-C",
            &work.display().to_string(),
            "-cf",
            &partial.display().to_string(),
            "manifest.json",
            &config_name,
            &format!("{diff_id}/layer.tar"),
        ],
    )?;
    std::fs::rename(&partial, out).map_err(|e| format!("cannot move {} into place: {e}", out.display()))
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let output = run("sha256sum", &[&path.display().to_string()])?;
    output.split_whitespace().next().map(str::to_owned).ok_or_else(|| format!("sha256sum printed nothing for {path:?}"))
}

fn copy_executable(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("cannot copy {} into the image: {e}", from.display()))?;
    set_mode(to, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}
