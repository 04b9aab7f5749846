//! Riposte's own image, built from the repository's `Dockerfile` (the one users build) with
//! Debian's buildah, since no Docker engine runs here and no image registry is reachable.
//!
//! - The Dockerfile's builder stage (`BUILDER_IMAGE`) is made locally: the harness's Debian
//!   image ([`super::images::debian`]) with gcc and libc6-dev, this machine's Rust toolchain
//!   (`rustc --print sysroot`) and its CA bundle (cargo fetches crates through whatever
//!   this host trusts). It is kept in buildah's storage as `localhost/riposte-builder:<key>`.
//! - The image is tagged with the chart's default reference (values.yaml's
//!   `image.repository`, Chart.yaml's `appVersion`), so the chart installs it unchanged, and
//!   saved as a docker archive `riposte-<key>.tar` beside the other images, keyed by every
//!   file git sees in the repository (a superset of the build context), the Dockerfile and
//!   the builder.
//! - buildah's storage, and the Dockerfile's cache mounts (cargo's registry and target
//!   directory), live under `riposte::local::cache_dir()/buildah`: a rebuild after a
//!   change recompiles only what changed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::Cluster;
use super::host::{run, run_with_input};
use super::images::{self, Image};

/// What the builder image is made of beside the Debian image, the toolchain and the CA
/// bundle (clang and libbpf's headers compile the node sensor's BPF programs; make,
/// pkg-config, OpenSSL's headers and static libraries, and a C++ compiler, which
/// librdkafka's configure requires even for its C library, build the Event Hubs consumer);
/// change it to make a new builder.
const BUILDER_PACKAGES: &str = "gcc g++ libc6-dev clang-19 libbpf-dev make pkg-config libssl-dev";

fn buildah_dir() -> PathBuf {
    riposte::local::cache_dir().join("buildah")
}

/// `env` running buildah with its storage under [`buildah_dir`], and `$TMPDIR` there too
/// (where buildah keeps the Dockerfile's cache mounts): the arguments. The storage driver is
/// vfs, which mounts nothing on the host (overlay leaves a mount of its own directory, and a
/// node's closing check compares the host's mounts with those before it started).
fn buildah_command(args: &[&str]) -> Vec<String> {
    let dir = buildah_dir().display().to_string();
    let mut all = vec![
        format!("TMPDIR={dir}/tmp"),
        "buildah".into(),
        "--root".into(),
        format!("{dir}/storage"),
        "--runroot".into(),
        format!("{dir}/run"),
        "--storage-driver".into(),
        "vfs".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// Runs buildah, which must succeed; its standard output.
fn buildah_ok(args: &[&str]) -> Result<String, String> {
    let all = buildah_command(args);
    Ok(run("env", &all.iter().map(String::as_str).collect::<Vec<_>>())?.trim().to_owned())
}

/// Runs buildah with its output shown line by line (prefixed) and kept in `log`; fails with
/// the end of the log.
fn buildah_shown(args: &[&str], log: &Path) -> Result<(), String> {
    let mut file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let (reader, writer) = std::io::pipe().map_err(|e| format!("a pipe for buildah: {e}"))?;
    let mut child = {
        let mut command = Command::new("env");
        command.args(buildah_command(args));
        let stderr = writer.try_clone().map_err(|e| format!("a pipe for buildah: {e}"))?;
        command.stdout(writer).stderr(stderr).stdin(std::process::Stdio::null());
        command.spawn().map_err(|e| format!("cannot run buildah: {e}"))?
        // The command, and with it our copies of the pipe's writing end, are dropped here:
        // the reader ends when buildah does.
    };
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        eprintln!("riposte image: {line}");
        let _ = writeln!(file, "{line}");
    }
    let status = child.wait().map_err(|e| format!("buildah: {e}"))?;
    if !status.success() {
        return Err(format!(
            "buildah {} failed ({status}); the end of {}:\n{}",
            args.first().copied().unwrap_or_default(),
            log.display(),
            riposte::local::tail_of(log, 30)
        ));
    }
    Ok(())
}

/// The first 16 hex digits of the SHA-256 of `text`.
fn digest(text: &str) -> Result<String, String> {
    Ok(run_with_input("sha256sum", &[], text)?[..16].to_owned())
}

/// The image the chart installs by default: `<image.repository>:<image.tag or appVersion>`.
pub fn chart_default_reference() -> Result<String, String> {
    let read = |file: &str| -> Result<serde_yaml::Value, String> {
        let path = crate::repo_path(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let values = read("charts/riposte/values.yaml")?;
    let chart = read("charts/riposte/Chart.yaml")?;
    let repository = values["image"]["repository"].as_str().ok_or("values.yaml has no image.repository")?;
    let tag = match values["image"]["tag"].as_str() {
        Some(tag) if !tag.is_empty() => tag.to_owned(),
        _ => chart["appVersion"].as_str().ok_or("Chart.yaml has no appVersion")?.to_owned(),
    };
    Ok(format!("{repository}:{tag}"))
}

/// A key of every file git sees in the repository (tracked, or untracked and not ignored):
/// their paths and contents. The build context is a part of them.
fn sources_key() -> Result<String, String> {
    let root = crate::repo_path("");
    let git = |args: &[&str], input: Option<&str>| -> Result<String, String> {
        let root = root.display().to_string();
        let mut all = vec!["-C", &root];
        all.extend_from_slice(args);
        match input {
            Some(input) => run_with_input("git", &all, input),
            None => run("git", &all),
        }
    };
    let listed = git(&["ls-files", "-z", "--cached", "--others", "--exclude-standard"], None)
        .map_err(|e| format!("listing the repository's files (the image is keyed by them): {e}"))?;
    let mut paths: Vec<&str> = listed.split('\0').filter(|p| !p.is_empty() && root.join(p).is_file()).collect();
    paths.sort_unstable();
    paths.dedup();
    let blobs = git(&["hash-object", "--stdin-paths"], Some(&paths.join("\n")))?;
    let listing: Vec<String> = paths.iter().zip(blobs.lines()).map(|(path, blob)| format!("{path} {blob}")).collect();
    if listing.len() != paths.len() {
        return Err(format!("git hash-object hashed {} of {} files", blobs.lines().count(), paths.len()));
    }
    digest(&listing.join("\n"))
}

/// The builder image in buildah's storage, made unless there; its reference.
fn builder() -> Result<String, String> {
    let debian = images::debian()?;
    let sysroot = PathBuf::from(run("rustc", &["--print", "sysroot"])?.trim());
    let cargo = sysroot.join("bin/cargo");
    if !cargo.exists() {
        return Err(format!("no cargo beside rustc in {} (the builder copies that toolchain)", sysroot.display()));
    }
    let ca_bundle = "/etc/ssl/certs/ca-certificates.crt";
    let versions = format!("{}{}", run("rustc", &["-vV"])?, run(&cargo.display().to_string(), &["-V"])?);
    let ca = run("sha256sum", &[ca_bundle]).map_err(|e| format!("the host's CA bundle: {e}"))?;
    let reference = format!(
        "localhost/riposte-builder:{}",
        digest(&[debian.reference.as_str(), &versions, &ca, BUILDER_PACKAGES].join("\n"))?
    );
    if buildah_ok(&["inspect", "--type", "image", &reference]).is_ok() {
        return Ok(reference);
    }
    eprintln!("riposte image: making the builder {reference} (Debian, gcc, this machine's Rust toolchain)");
    let log = buildah_dir().join("builder.log");
    let container = buildah_ok(&["from", "--pull=never", &format!("docker-archive:{}", debian.archive.display())])?;
    let made = (|| {
        let install = format!(
            "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
             {BUILDER_PACKAGES} && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb"
        );
        buildah_shown(&["run", "--isolation", "chroot", &container, "--", "sh", "-c", &install], &log)?;
        let path = |p: &Path| p.display().to_string();
        let rustc = sysroot.join("bin/rustc");
        buildah_ok(&["copy", &container, &path(&cargo), &path(&rustc), "/usr/local/rust/bin/"])?;
        buildah_ok(&["copy", &container, &path(&sysroot.join("lib")), "/usr/local/rust/lib"])?;
        buildah_ok(&["copy", &container, ca_bundle, ca_bundle])?;
        // As the official Rust image has them.
        buildah_ok(&[
            "config",
            "--env",
            "CARGO_HOME=/usr/local/cargo",
            "--env",
            "PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &container,
        ])?;
        buildah_ok(&["commit", "-q", &container, &reference])
    })();
    let _ = buildah_ok(&["rm", &container]);
    made.map(|_| reference)
}

/// Riposte's image as a docker archive, built from the `Dockerfile` unless cached.
pub fn riposte() -> Result<Image, String> {
    if run("sh", &["-c", "command -v buildah"]).is_err() {
        return Err("buildah is missing: install Debian's buildah (tests/run.sh does)".into());
    }
    let reference = chart_default_reference()?;
    for sub in ["tmp", "storage", "run"] {
        std::fs::create_dir_all(buildah_dir().join(sub)).map_err(|e| format!("cannot create buildah's {sub}: {e}"))?;
    }
    let builder = builder()?;
    let key = digest(&[sources_key()?.as_str(), &builder, &reference].join("\n"))?;
    let dir = riposte::local::cache_dir().join("images");
    let archive = dir.join(format!("riposte-{key}.tar"));
    if archive.exists() {
        return Ok(Image { reference, archive });
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".riposte.lock")).map_err(|e| format!("the riposte image lock: {e}"))?;
    lock.lock().map_err(|e| format!("cannot lock the riposte image: {e}"))?;
    if archive.exists() {
        return Ok(Image { reference, archive });
    }
    eprintln!("riposte image: building {reference} from the Dockerfile with buildah (sources changed: {key})");
    let started = Instant::now();
    let root = crate::repo_path("");
    let dockerfile = root.join("Dockerfile");
    buildah_shown(
        &[
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--build-arg",
            &format!("BUILDER_IMAGE={builder}"),
            "-f",
            &dockerfile.display().to_string(),
            "-t",
            &reference,
            &root.display().to_string(),
        ],
        &buildah_dir().join("build.log"),
    )?;
    let partial = archive.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    buildah_ok(&["push", "--quiet", &reference, &format!("docker-archive:{}:{reference}", partial.display())])?;
    std::fs::rename(&partial, &archive).map_err(|e| format!("cannot move {} into place: {e}", archive.display()))?;
    // Older builds are of sources that are gone.
    let older = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in older.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("riposte-") && name.ends_with(".tar") && entry.path() != archive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // The image now lives in the archive; the store keeps the builder and the caches.
    let _ = buildah_ok(&["rmi", &reference]);
    eprintln!("riposte image: {reference} built in {:.0} s ({})", started.elapsed().as_secs_f64(), archive.display());
    Ok(Image { reference, archive })
}

impl Cluster {
    /// Builds Riposte's image unless cached (minutes the first time; see [`riposte`]) and
    /// imports it into the node's containerd; its reference, the chart's default.
    pub fn import_riposte_image(&self) -> Result<String, String> {
        let image = riposte()?;
        super::ctr(&self.containerd_socket, &["images", "import", &image.archive.display().to_string()])?;
        Ok(image.reference)
    }
}
