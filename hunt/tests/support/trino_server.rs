//! A real Trino for tests: one coordinator that is also its only worker, with a `hive`
//! catalog reading a directory of Hive-partitioned Parquet files through Trino's native
//! local file system and its file metastore.
//!
//! - The server tarball (Maven Central's `io.trino:trino-server`, 821 MB) is downloaded once
//!   into `<cache>/trino-<version>/`, where `<cache>` is `$RIPOSTE_CACHE_DIR`,
//!   `$XDG_CACHE_HOME/riposte` or `~/.cache/riposte`, and only the server's `lib/` and the Hive
//!   plugin (without its HDFS client) are extracted from it, 305 MB of its 940 MB: Trino boots
//!   with whatever plugins it finds, and loading fewer is quicker. A first start also leaves
//!   there an archive of the classes it loaded (about 120 MB), which later starts map.
//! - Java is `$RIPOSTE_TRINO_JAVA_HOME`, else the newest `/usr/lib/jvm/temurin-*` of version
//!   24 or newer (Trino 476 refuses older ones).
//! - Each server gets its own directory (configuration, node data, `server.log`) and a free
//!   port on 127.0.0.1. Its file metastore is `<data_root>/.trino-metastore`, since Trino's local
//!   file system reaches nothing outside its root. Dropping the server stops the JVM and removes
//!   both; a watchdog process does it too should the test process die without dropping it.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riposte_hunt::trino::{TrinoClient, TrinoSettings};

pub const TRINO_VERSION: &str = "476";
const MINIMUM_JAVA: u32 = 24;
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A first start also writes the class archive on the way out, which takes a few seconds.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The metastore directory, relative to the data root (and the catalog's `local:///`).
const METASTORE_DIR: &str = ".trino-metastore";

/// A running Trino server.
pub struct TrinoServer {
    jvm: Child,
    watchdog: Child,
    dir: PathBuf,
    metastore: PathBuf,
    port: u16,
    /// Where the JVM writes its class archive when it exits (first start only), and where
    /// the archive then goes.
    class_archive: Option<(PathBuf, PathBuf)>,
}

impl TrinoServer {
    /// Starts a server whose `hive` catalog reads `data_root` as `local:///`, and waits until
    /// it runs queries.
    pub async fn start(data_root: &Path) -> Result<TrinoServer, String> {
        TrinoServer::start_with(data_root, None).await
    }

    /// Starts a server whose `hive` catalog reads `s3://` from an S3-compatible server as
    /// well (its file metastore stays under `data_root`).
    pub async fn start_with_bucket(data_root: &Path, bucket: &S3Access) -> Result<TrinoServer, String> {
        TrinoServer::start_with(data_root, Some(bucket)).await
    }

    async fn start_with(data_root: &Path, bucket: Option<&S3Access>) -> Result<TrinoServer, String> {
        let java = JavaHome::find()?;
        let install = installation()?;
        let data_root = data_root.canonicalize().map_err(|e| format!("data root {}: {e}", data_root.display()))?;
        let dir = std::env::temp_dir().join(format!("riposte-trino-{}-{}", std::process::id(), unique()));
        create_dir(&dir.join("etc/catalog"))?;
        let metastore = data_root.join(METASTORE_DIR);
        let port = free_port();
        write(&dir.join("etc/config.properties"), &config_properties(&install, port))?;
        let mut catalog = hive_properties(&data_root);
        if let Some(bucket) = bucket {
            catalog.push_str(&s3_properties(bucket));
        }
        write(&dir.join("etc/catalog/hive.properties"), &catalog)?;

        // Class data sharing: the classes a first start loads are archived when it stops, and
        // later starts map them instead of loading them again (4 s less of 12 s here).
        let archive = install.join(format!("classes-{}.jsa", java.runtime_version));
        let (archive_flag, class_archive) = if archive.is_file() {
            (format!("-XX:SharedArchiveFile={}", archive.display()), None)
        } else {
            let written = dir.join("classes.jsa");
            (format!("-XX:ArchiveClassesAtExit={}", written.display()), Some((written, archive)))
        };
        let log = File::create(dir.join("server.log")).map_err(|e| format!("creating the log: {e}"))?;
        let jvm = Command::new(java.home.join("bin/java"))
            .arg("-cp")
            .arg(install.join("lib/*"))
            .args(JVM_FLAGS)
            .arg(archive_flag)
            .arg(format!("-Dconfig={}", dir.join("etc/config.properties").display()))
            .arg("io.trino.server.TrinoServer")
            // The working directory is the node's data directory, and where Trino looks for
            // `etc/catalog/`.
            .current_dir(&dir)
            .env("JAVA_HOME", &java.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            // Its own process group, so that a Ctrl-C in the terminal leaves the stopping to us.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting Trino with {}: {e}", java.home.display()))?;
        let watchdog = match spawn_watchdog(jvm.id(), &dir, &metastore) {
            Ok(watchdog) => watchdog,
            Err(error) => {
                kill_group(jvm.id());
                return Err(error);
            }
        };
        let mut server = TrinoServer { jvm, watchdog, dir, metastore, port, class_archive };
        if let Err(error) = server.wait_until_ready().await {
            // The archive of a failed start would lack most classes, and be kept for good.
            server.class_archive = None;
            return Err(error);
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`, for [`riposte_hunt::trino::TrinoSettings::endpoint`].
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the coordinator counts itself as an active worker, which queries that read
    /// a table need (they fail with NO_NODES_AVAILABLE before): `/v1/info` saying
    /// `"starting":false` says less.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let probe = TrinoClient::new(TrinoSettings {
            endpoint: self.endpoint(),
            user: "riposte-test".into(),
            catalog: "system".into(),
            schema: "runtime".into(),
            ca_file: None,
        })
        .map_err(|e| e.to_string())?;
        let active_workers = "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'";
        loop {
            if let Some(status) = self.jvm.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("Trino exited ({status}) while starting:\n{}", self.log_tail()));
            }
            // Refused connections, then SERVER_STARTING_UP, then no active node, then one.
            let answer = probe.query(active_workers, Duration::from_secs(10)).await;
            if answer.as_ref().is_ok_and(|result| result.rows == [vec![serde_json::json!(1)]]) {
                eprintln!("trino {TRINO_VERSION}: ready in {:.1?} on {}", started.elapsed(), self.endpoint());
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "Trino did not start within {START_TIMEOUT:?} (last answer: {answer:?}):\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- server.log (last lines)\n{}", lines[lines.len().saturating_sub(60)..].join("\n"))
    }

    /// Asks the JVM to exit (the class archive is written then), and kills it if it does not.
    fn stop(&mut self) {
        let pid = self.jvm.id();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let exited = loop {
            if let Ok(Some(_)) = self.jvm.try_wait() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        kill_group(pid);
        let _ = self.jvm.wait();
        // Only a JVM that exited by itself finished writing its archive. A rename, so that a
        // concurrent start finds either a whole archive or none.
        if let Some((written, archive)) = self.class_archive.as_ref().filter(|_| exited) {
            let _ = std::fs::rename(written, archive);
        }
    }
}

impl Drop for TrinoServer {
    fn drop(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.metastore);
    }
}

/// Small and quick to start rather than fast: the tests query a few rows on a small machine.
/// The others are the flags Trino's own `jvm.config` sets that matter here.
const JVM_FLAGS: &[&str] = &[
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.attach.allowAttachSelf=true",
    // Trino loads JOL's agent to measure memory, which Java 21+ warns about unless allowed.
    "-XX:+EnableDynamicAgentLoading",
    "-Xlog:cds=off,cds+dynamic=off",
];

/// The server's and the node's properties in one file: Trino's launcher would pass those of
/// `node.properties` as system properties, and it is not used here (`java` is started directly,
/// so that the JVM is this process's child and its flags are in this file).
fn config_properties(install: &Path, port: u16) -> String {
    format!(
        "node.environment=test
node.id=riposte-test
# The address the coordinator announces to itself, rather than the host's first interface.
node.internal-address=127.0.0.1
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port={port}
discovery.uri=http://127.0.0.1:{port}
# With static catalogs, a node runs a catalog's splits only once the node list, refreshed every
# 5 s, has seen the node announce it: until then, queries on it fail with NO_NODES_AVAILABLE.
# Dynamic ones (read from etc/catalog/ all the same) are on every active node at once.
catalog.management=dynamic
plugin.dir={plugins}
",
        plugins = install.join("plugin").display()
    )
}

/// The catalog: the files under `data_root` are `local:///<Table>/date=…/hour=…/*.parquet`.
fn hive_properties(data_root: &Path) -> String {
    format!(
        "connector.name=hive
hive.metastore=file
hive.metastore.catalog.dir=local:///{METASTORE_DIR}
fs.native-local.enabled=true
local.location={}
# Riposte writes microsecond timestamps. With Hive's default precision, milliseconds, a
# timestamp(6) column is refused (its precision does not match).
hive.timestamp-precision=MICROSECONDS
",
        data_root.display()
    )
}

/// How Trino reaches an S3-compatible server.
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Trino's native S3 file system, addressing buckets by path as S3-compatible servers need.
fn s3_properties(bucket: &S3Access) -> String {
    format!(
        "fs.native-s3.enabled=true
s3.endpoint={}
s3.region={}
s3.path-style-access=true
s3.aws-access-key={}
s3.aws-secret-key={}
",
        bucket.endpoint, bucket.region, bucket.access_key, bucket.secret_key
    )
}

/// A shell that waits for its standard input to close, which happens when this process
/// ends however it ends, then kills the JVM's process group and removes what it wrote.
/// Dropping the server kills the watchdog first.
fn spawn_watchdog(jvm: u32, dir: &Path, metastore: &Path) -> Result<Child, String> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"read line; kill -KILL "-$0" 2>/dev/null; rm -rf "$1" "$2""#)
        .arg(jvm.to_string())
        .arg(dir)
        .arg(metastore)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting Trino's watchdog shell: {e}"))
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

struct JavaHome {
    home: PathBuf,
    /// `JAVA_RUNTIME_VERSION` of its `release` file, e.g. `25.0.3+9-LTS`: a class archive
    /// only works with the JVM that wrote it.
    runtime_version: String,
}

impl JavaHome {
    fn find() -> Result<JavaHome, String> {
        if let Some(home) = std::env::var_os("RIPOSTE_TRINO_JAVA_HOME") {
            let java = JavaHome::read(Path::new(&home))
                .ok_or_else(|| format!("RIPOSTE_TRINO_JAVA_HOME={home:?} is not a Java home (no release file)"))?;
            if java.major() < MINIMUM_JAVA {
                return Err(format!(
                    "RIPOSTE_TRINO_JAVA_HOME={home:?} is Java {}; Trino {TRINO_VERSION} needs Java {MINIMUM_JAVA} or newer",
                    java.runtime_version
                ));
            }
            return Ok(java);
        }
        let candidates = std::fs::read_dir("/usr/lib/jvm").into_iter().flatten().flatten();
        candidates
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("temurin-"))
            .filter_map(|entry| JavaHome::read(&entry.path()))
            .filter(|java| java.major() >= MINIMUM_JAVA)
            .max_by_key(JavaHome::major)
            .ok_or_else(|| {
                format!(
                    "Trino {TRINO_VERSION} needs Java {MINIMUM_JAVA} or newer, and there is no /usr/lib/jvm/temurin-* of that \
                     version: install one (e.g. the temurin-25-jdk package from Adoptium's apt repository) or set \
                     RIPOSTE_TRINO_JAVA_HOME to a Java {MINIMUM_JAVA}+ home"
                )
            })
    }

    fn read(home: &Path) -> Option<JavaHome> {
        let release = std::fs::read_to_string(home.join("release")).ok()?;
        let runtime_version = release
            .lines()
            .find_map(|line| Some(line.strip_prefix("JAVA_RUNTIME_VERSION=")?.trim_matches('"').to_string()))?;
        home.join("bin/java").is_file().then(|| JavaHome { home: home.to_path_buf(), runtime_version })
    }

    fn major(&self) -> u32 {
        let major = self.runtime_version.split(['.', '+', '-']).next().unwrap_or_default();
        major.parse().unwrap_or_default()
    }
}

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RIPOSTE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("riposte")
}

/// The server's top directory in the tarball, and the parts of it the tests need.
const TOP: &str = "trino-server-476";
const NEEDED: &[&str] = &["trino-server-476/lib/", "trino-server-476/plugin/hive/"];
/// The Hive plugin's HDFS client: only loaded with `fs.hadoop.enabled`.
const NOT_NEEDED: &str = "trino-server-476/plugin/hive/hdfs/";
/// Written last into an extracted installation: without it, extraction starts over.
const EXTRACTED_MARKER: &str = ".riposte-extracted";

/// The extracted server (`lib/`, `plugin/hive/`), downloaded and extracted unless cached.
fn installation() -> Result<PathBuf, String> {
    let cache = cache_dir().join(format!("trino-{TRINO_VERSION}"));
    let install = cache.join(TOP);
    if install.join(EXTRACTED_MARKER).is_file() {
        return Ok(install);
    }
    create_dir(&cache)?;
    // Test processes run at once (one per test binary); one extracts, the others wait here.
    // The lock is the operating system's, released even if its holder is killed.
    let lock_path = cache.join("extract.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if install.join(EXTRACTED_MARKER).is_file() {
        return Ok(install);
    }
    let tarball = download_tarball(&cache)?;
    let started = Instant::now();
    eprintln!("trino: extracting the server's lib/ and Hive plugin from {} (first time only)", tarball.display());
    let members = members_to_extract(&tarball)?;
    let staging = cache.join("extracting");
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&install);
    create_dir(&staging)?;
    let list = cache.join("members.txt");
    write(&list, &members.join("\n"))?;
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&staging).arg("-T").arg(&list))?;
    let _ = std::fs::remove_file(&list);
    // The other plugins' directories came along only as hard-link targets of Hive's files,
    // which keep their data.
    let plugins = staging.join(TOP).join("plugin");
    for plugin in std::fs::read_dir(&plugins).map_err(|e| e.to_string())?.flatten() {
        if plugin.file_name() != "hive" {
            std::fs::remove_dir_all(plugin.path()).map_err(|e| format!("removing {}: {e}", plugin.path().display()))?;
        }
    }
    std::fs::rename(staging.join(TOP), &install).map_err(|e| format!("moving the extracted server: {e}"))?;
    let _ = std::fs::remove_dir_all(&staging);
    write(&install.join(EXTRACTED_MARKER), TRINO_VERSION)?;
    eprintln!("trino: extracted into {} in {:.1?}", install.display(), started.elapsed());
    Ok(install)
}

/// The tarball's files under [`NEEDED`], and the files elsewhere that some of them are hard
/// links to: the tarball stores each jar once and links the other plugins' copies to it, and
/// tar cannot make a link to a file it has not extracted.
fn members_to_extract(tarball: &Path) -> Result<Vec<String>, String> {
    let listing = run(Command::new("tar").arg("-tvzf").arg(tarball))?;
    let is_needed = |name: &str| NEEDED.iter().any(|prefix| name.starts_with(prefix)) && !name.starts_with(NOT_NEEDED);
    let mut members = Vec::new();
    let mut link_targets = std::collections::BTreeSet::new();
    // `-rw-r--r-- 0/0 190881 1980-01-01 08:00 <name>`, or `h… <name> link to <target>` for a
    // hard link; the names have no spaces. Directories come along with their files.
    for line in listing.lines().filter(|line| line.starts_with(['-', 'h'])) {
        let (entry, target) =
            line.split_once(" link to ").map_or((line, None), |(entry, target)| (entry, Some(target)));
        let name = entry.rsplit(' ').next().unwrap_or_default();
        if !is_needed(name) {
            continue;
        }
        members.push(name.to_string());
        if let Some(target) = target.filter(|target| !is_needed(target)) {
            link_targets.insert(target.to_string());
        }
    }
    if members.is_empty() {
        return Err(format!("{} has none of {NEEDED:?}", tarball.display()));
    }
    members.extend(link_targets);
    Ok(members)
}

fn download_tarball(cache: &Path) -> Result<PathBuf, String> {
    let name = format!("trino-server-{TRINO_VERSION}.tar.gz");
    let tarball = cache.join(&name);
    if tarball.is_file() {
        return Ok(tarball);
    }
    let url = format!("https://repo.maven.apache.org/maven2/io/trino/trino-server/{TRINO_VERSION}/{name}");
    let partial = cache.join(format!("{name}.part"));
    eprintln!("trino: downloading {url} (821 MB, first time only) into {}", cache.display());
    let started = Instant::now();
    // curl's progress bar goes to stderr, which cargo shows.
    let status = Command::new("curl")
        .args(["--fail", "--location", "--retry", "3", "--progress-bar", "--continue-at", "-", "--output"])
        .arg(&partial)
        .arg(&url)
        .status()
        .map_err(|e| format!("running curl (needed to download Trino): {e}"))?;
    if !status.success() {
        return Err(format!("downloading {url} failed: curl {status}"));
    }
    std::fs::rename(&partial, &tarball).map_err(|e| format!("moving {}: {e}", partial.display()))?;
    eprintln!("trino: downloaded in {:.1?}", started.elapsed());
    Ok(tarball)
}

/// Runs a command to success and returns its standard output.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("running {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command:?} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// A port nothing listens on now (the listener is closed before Trino binds it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a bound address").port()
}
