//! A real Apache Kafka broker for tests: one KRaft node (broker and controller in one JVM)
//! run from the `org.apache.kafka:kafka_2.13` jars of Maven Central.
//!
//! - The jars and their dependencies are resolved once with `mvn dependency:copy-dependencies`
//!   (its download lines are the progress) into `<cache>/kafka-<version>/libs`, where
//!   `<cache>` is `$RIPOSTE_CACHE_DIR`, `$XDG_CACHE_HOME/riposte` or `~/.cache/riposte`.
//! - Each broker gets its own directory (configuration, data, `server.log`), its storage
//!   formatted with Kafka's StorageTool, and free ports on 127.0.0.1: a PLAINTEXT listener
//!   and a SASL_SSL one (SASL PLAIN, a certificate made with rcgen for `localhost`).
//! - Java is `$JAVA_HOME/bin/java`, or `java` on the PATH (Kafka 4 needs 17 or newer).
//! - Dropping the broker kills the JVM and removes its directory.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Kafka release the broker runs: the newest 4.x that resolves from Maven Central here.
pub const KAFKA_VERSION: &str = "4.4.0";
/// Kafka logs through SLF4J 1.7 (its declared API); this binding sends that to log4j2.
const LOG4J_VERSION: &str = "2.25.5";
/// A KRaft cluster id is 16 bytes in unpadded URL-safe base64 ("riposte-kafka-01").
const CLUSTER_ID: &str = "cmlwb3N0ZS1rYWZrYS0wMQ";

/// The SASL PLAIN user the SASL_SSL listener accepts, with its password.
pub struct SaslUser {
    pub username: String,
    pub password: String,
}

/// A running broker.
pub struct KafkaBroker {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:<port>` of the PLAINTEXT listener.
    pub plaintext: String,
    /// `localhost:<port>` of the SASL_SSL listener (its certificate names `localhost`).
    pub sasl_ssl: String,
    /// The PEM file of the CA that signed the SASL_SSL listener's certificate.
    pub ca_file: PathBuf,
}

impl KafkaBroker {
    /// Starts a broker whose SASL_SSL listener accepts `user`, and waits until it answers.
    pub fn start(user: &SaslUser) -> Result<KafkaBroker, String> {
        let libs = kafka_libs()?;
        let dir = std::env::temp_dir().join(format!("riposte-kafka-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let [plaintext_port, controller_port, sasl_port] = free_ports();
        let ca_file = write_tls_files(&dir)?;
        let properties = server_properties(&dir, plaintext_port, controller_port, sasl_port, user);
        write(&dir.join("server.properties"), &properties)?;
        write(&dir.join("log4j2.properties"), &log4j_properties(&dir.join("server.log")))?;

        let format = java(&libs, &dir)
            .args(["kafka.tools.StorageTool", "format", "--cluster-id", CLUSTER_ID, "--config"])
            .arg(dir.join("server.properties"))
            .output()
            .map_err(|e| format!("running Kafka's StorageTool: {e}"))?;
        if !format.status.success() {
            return Err(format!(
                "formatting the broker's storage failed: {}{}",
                String::from_utf8_lossy(&format.stdout),
                String::from_utf8_lossy(&format.stderr)
            ));
        }
        let child = java(&libs, &dir)
            .arg("kafka.Kafka")
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting the broker: {e}"))?;
        let mut broker = KafkaBroker {
            child,
            dir,
            plaintext: format!("127.0.0.1:{plaintext_port}"),
            sasl_ssl: format!("localhost:{sasl_port}"),
            ca_file,
        };
        broker.wait_until_ready(Duration::from_secs(120))?;
        Ok(broker)
    }

    /// Waits until the broker answers a metadata request with itself in it.
    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let started = Instant::now();
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.plaintext)
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the broker exited ({status}) while starting:\n{}", self.log_tail()));
            }
            if client.fetch_metadata(None, Duration::from_secs(1)).is_ok_and(|metadata| !metadata.brokers().is_empty())
            {
                eprintln!("kafka broker {KAFKA_VERSION}: ready in {:.1?} on {}", started.elapsed(), self.plaintext);
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!("the broker did not answer within {timeout:?}:\n{}", self.log_tail()));
            }
        }
    }

    /// A topic with `partitions` partitions (one of its own for each test).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.plaintext)
            .create()
            .map_err(|e| e.to_string())?;
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .map_err(|e| e.to_string())?;
        for result in results {
            result.map_err(|(topic, error)| format!("creating {topic}: {error}"))?;
        }
        Ok(())
    }

    /// Writes `(partition, value)` records with keys `key-<i>`, in order.
    pub async fn produce(&self, topic: &str, records: &[(i32, String)]) -> Result<(), String> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.plaintext)
            .create()
            .map_err(|e| e.to_string())?;
        for (i, (partition, value)) in records.iter().enumerate() {
            let key = format!("key-{i}");
            producer
                .send(FutureRecord::to(topic).partition(*partition).key(&key).payload(value), Duration::from_secs(30))
                .await
                .map_err(|(error, _)| format!("producing to {topic}/{partition}: {error}"))?;
        }
        Ok(())
    }

    /// The end of the broker's log and its standard error, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut tail = String::new();
        for name in ["server.log", "stderr.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            tail.push_str(&format!(
                "--- {name} (last lines)\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        tail
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RIPOSTE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("riposte")
}

/// The broker's class path directory, resolved with Maven unless the cache has it.
fn kafka_libs() -> Result<PathBuf, String> {
    let home = cache_dir().join(format!("kafka-{KAFKA_VERSION}"));
    let libs = home.join("libs");
    if libs.is_dir() {
        return Ok(libs);
    }
    let partial = home.join(format!("libs.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| format!("creating {}: {e}", partial.display()))?;
    let pom = home.join("pom.xml");
    write(&pom, &broker_pom())?;
    eprintln!(
        "kafka broker: resolving org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and its dependencies from Maven Central into {} (first time only)",
        libs.display()
    );
    let started = Instant::now();
    let mut maven = Command::new("mvn")
        .args(["-B", "-Dstyle.color=never", "-f"])
        .arg(&pom)
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .arg("-DincludeScope=runtime")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running mvn (Maven is needed to fetch the Kafka broker): {e}"))?;
    // The jars' download lines go to stderr, which cargo shows, as the progress.
    let mut transcript = Vec::new();
    for line in BufReader::new(maven.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        if (line.contains("Downloaded from") && line.contains(".jar "))
            || line.contains("ERROR")
            || line.contains("BUILD")
        {
            eprintln!("  {line}");
        }
        transcript.push(line);
    }
    let status = maven.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "mvn failed ({status}):\n{}",
            transcript[transcript.len().saturating_sub(30)..].join("\n")
        ));
    }
    // Another test process may have finished first: either copy is complete.
    if std::fs::rename(&partial, &libs).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    eprintln!("kafka broker: resolved in {:.1?}", started.elapsed());
    Ok(libs)
}

fn broker_pom() -> String {
    format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.riposte.tests</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"#
    )
}

fn java(libs: &Path, dir: &Path) -> Command {
    let java = std::env::var_os("JAVA_HOME")
        .map_or_else(|| PathBuf::from("java"), |home| PathBuf::from(home).join("bin/java"));
    let mut command = Command::new(java);
    // A small heap and the quick JIT tier: the tests send little, and the machine is small.
    command
        .args(["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"])
        .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    command
}

fn server_properties(dir: &Path, plaintext: u16, controller: u16, sasl: u16, user: &SaslUser) -> String {
    let data = dir.join("data");
    let tls = dir.join("broker.pem");
    let (username, password) = (&user.username, &user.password);
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:{plaintext},CONTROLLER://127.0.0.1:{controller},SASL_SSL://127.0.0.1:{sasl}
advertised.listeners=PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://localhost:{sasl}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{username}=\"{password}\";
ssl.keystore.type=PEM
ssl.keystore.location={tls}
",
        data = data.display(),
        tls = tls.display(),
    )
}

fn log4j_properties(log: &Path) -> String {
    format!(
        "appender.file.type=File
appender.file.name=file
appender.file.fileName={}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
",
        log.display()
    )
}

/// A CA and a certificate for `localhost` signed by it: the key and chain in
/// `broker.pem` (Kafka's PEM key store), the CA in `ca.pem`, whose path is returned.
fn write_tls_files(dir: &Path) -> Result<PathBuf, String> {
    let ca_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "riposte test CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    let certificate = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    write(&dir.join("broker.pem"), &format!("{}{}{}", key.serialize_pem(), certificate.pem(), ca.pem()))?;
    let ca_file = dir.join("ca.pem");
    write(&ca_file, &ca.pem())?;
    Ok(ca_file)
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// Ports nothing listens on now (the listeners are closed before the broker binds them).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound address").port())
}
