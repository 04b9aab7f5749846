//! An S3-compatible server for tests: gofakes3 (MIT), which speaks S3's REST protocol
//! (path-style buckets, ListObjectsV2, ranged GETs, multipart uploads) over HTTP, keeping the
//! objects in memory. It is built from Go modules on first use into
//! `<cache>/tools/gofakes3-<version>/` (`<cache>` as for Trino), and each server gets a free
//! port on 127.0.0.1 and one bucket. Dropping the server kills it.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::trino_server::{S3Access, cache_dir, free_port};

const GOFAKES3_VERSION: &str = "v1.2.0";
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct S3Server {
    process: Child,
    port: u16,
}

impl S3Server {
    /// Starts a server holding an empty `bucket`, and waits until it accepts connections.
    pub async fn start(bucket: &str) -> Result<S3Server, String> {
        let binary = binary()?;
        let port = free_port();
        let process = Command::new(&binary)
            .args(["-backend", "memory", "-initialbucket", bucket, "-quiet"])
            .arg("-host")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut server = S3Server { process, port };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = server.process.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("gofakes3 exited ({status}) while starting"));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("gofakes3 did not listen on port {port} within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Credentials and region for a client: the server takes any, and they are checked by
    /// neither side here; the clients sign every request with them all the same.
    pub fn access(&self) -> S3Access {
        S3Access {
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            access_key: "riposte-test".into(),
            secret_key: "riposte-test-secret".into(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The server's binary, built with `go install` unless cached; concurrent test processes
/// build it once (a file lock).
fn binary() -> Result<PathBuf, String> {
    let dir = cache_dir().join("tools").join(format!("gofakes3-{GOFAKES3_VERSION}"));
    let binary = dir.join("gofakes3");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock = File::create(dir.join("build.lock")).map_err(|e| format!("creating the build lock: {e}"))?;
    lock.lock().map_err(|e| format!("locking the build lock: {e}"))?;
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!("gofakes3 {GOFAKES3_VERSION}: building from Go modules into {} (first time only)", dir.display());
    let started = Instant::now();
    // `go install` writes the binary whole at the end: an interrupted build leaves none.
    let status = Command::new("go")
        .args(["install", &format!("github.com/johannesboyne/gofakes3/cmd/gofakes3@{GOFAKES3_VERSION}")])
        .env("GOBIN", &dir)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .status()
        .map_err(|e| format!("running go install (Go is needed to build gofakes3): {e}"))?;
    if !status.success() || !binary.is_file() {
        return Err(format!("building gofakes3 {GOFAKES3_VERSION} failed ({status})"));
    }
    eprintln!("gofakes3: built in {:.1?}", started.elapsed());
    Ok(binary)
}
