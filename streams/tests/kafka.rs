//! The consumer group against a real Apache Kafka broker (tests/support/kafka_broker.rs):
//! one broker for all the trials, each with its own topics and groups.

mod support;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use riposte_streams::ErrorKind;
use riposte_streams::kafka::{Consumer, Delivery, Record, Security, Settings, Sink};
use support::kafka_broker::{KafkaBroker, SaslUser, free_ports};
use tokio::sync::{mpsc, oneshot};

const EVENT_HUBS_KEY: &str = "cmlwb3N0ZS10ZXN0LWtleQ==";

fn connection_string(key: &str) -> String {
    format!("Endpoint=sb://localhost/;SharedAccessKeyName=riposte-test;SharedAccessKey={key}")
}

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    let broker = if arguments.list {
        Err("not started for --list".to_string())
    } else {
        KafkaBroker::start(&SaslUser {
            username: riposte_streams::kafka::EVENT_HUBS_USERNAME.to_string(),
            password: connection_string(EVENT_HUBS_KEY),
        })
    };
    let broker = Arc::new(broker);
    type Test = fn(&KafkaBroker) -> Result<(), String>;
    let tests: [(&str, Test); 10] = [
        ("produced_records_reach_the_sink_with_their_metadata_and_are_committed", records_reach_the_sink),
        ("the_lag_counts_the_records_read_and_not_yet_committed", lag_counts_uncommitted_records),
        ("a_refused_batch_is_offered_again_and_committed_only_once_accepted", refused_batch_is_offered_again),
        ("a_restarted_consumer_resumes_after_the_last_accepted_record", restarted_consumer_resumes),
        ("two_consumers_of_a_group_share_the_partitions", two_consumers_share_partitions),
        ("a_broker_that_is_not_there_is_a_transient_error_not_a_hang", absent_broker_is_reported),
        ("event_hubs_settings_consume_over_sasl_plain_and_tls", event_hubs_over_sasl_ssl),
        ("a_wrong_event_hubs_key_is_an_authentication_error", wrong_key_is_refused),
        ("a_broker_certificate_outside_the_built_in_roots_is_refused", untrusted_certificate_is_refused),
        ("settings_librdkafka_refuses_are_a_configuration_error", refused_settings),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let broker = broker.clone();
            Trial::test(name, move || match broker.as_ref() {
                Ok(broker) => test(broker).map_err(|message| Failed::from(format!("{message}\n{}", broker.log_tail()))),
                Err(error) => Err(Failed::from(format!("the Kafka broker did not start: {error}"))),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    drop(broker);
    conclusion.exit_code()
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// The offsets `group` committed on `topic`'s partitions (`None`: nothing committed).
async fn committed(
    broker: &KafkaBroker,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Option<i64>>, String> {
    let bootstrap = broker.plaintext.clone();
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        // Asks the group's coordinator without joining the group.
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .map_err(|e| e.to_string())?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let offsets = client.committed_offsets(list, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        Ok((0..partitions)
            .map(|partition| match offsets.find_partition(&topic, partition).map(|element| element.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            })
            .collect())
    })
    .await
    .expect("the committed-offsets query does not panic")
}

fn settings(broker: &KafkaBroker, topic: &str, group: &str) -> Settings {
    let mut settings = Settings::new(broker.plaintext.clone(), vec![topic.to_string()], group);
    settings.connect_timeout = Duration::from_secs(20);
    settings.session_timeout = Duration::from_secs(10);
    settings.statistics_interval = Duration::from_millis(500);
    settings.refusal_backoff = Duration::from_millis(100);
    settings.max_refusal_backoff = Duration::from_millis(400);
    settings.max_batch_wait = Duration::from_millis(100);
    settings
}

/// A sink that keeps what it accepts, refuses while told to, and reports each delivery.
#[derive(Clone, Default)]
struct Recorder {
    accepted: Arc<Mutex<Vec<Record>>>,
    offered: Arc<Mutex<Vec<Vec<Record>>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    deliveries: Option<mpsc::UnboundedSender<usize>>,
}

impl Recorder {
    fn accepted(&self) -> Vec<Record> {
        self.accepted.lock().unwrap().clone()
    }

    fn offered(&self) -> Vec<Vec<Record>> {
        self.offered.lock().unwrap().clone()
    }

    fn refuse(&self, refuse: bool) {
        self.refuse.store(refuse, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Sink for Recorder {
    async fn accept(&mut self, batch: &[Record]) -> Delivery {
        self.offered.lock().unwrap().push(batch.to_vec());
        let refused = self.refuse.load(std::sync::atomic::Ordering::SeqCst);
        if !refused {
            self.accepted.lock().unwrap().extend_from_slice(batch);
        }
        if let Some(deliveries) = &self.deliveries {
            let _ = deliveries.send(batch.len());
        }
        if refused { Delivery::Refused("the test sink refuses".into()) } else { Delivery::Accepted }
    }
}

/// Runs `consumer` into `sink` until `stop` fires; the run's result.
fn spawn_run(
    consumer: Arc<Consumer>,
    mut sink: Recorder,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), riposte_streams::Error>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        consumer
            .run(&mut sink, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, run)
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

fn records_reach_the_sink(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "records-reach-the-sink";
    block_on(broker.create_topic(topic, 2))?;
    block_on(async {
        let produced: Vec<(i32, String)> =
            (0..20).map(|i| (i % 2, format!("{{\"records\":[{{\"n\":{i}}}]}}"))).collect();
        broker.produce(topic, &produced).await?;
        let consumer = Arc::new(Consumer::start(settings(broker, topic, "reach")).await.map_err(|e| e.to_string())?);
        let sink = Recorder::default();
        let (stop, run) = spawn_run(consumer.clone(), sink.clone());
        wait_for("20 records", Duration::from_secs(60), || sink.accepted().len() >= 20).await?;
        wait_for("the lag to be read as 0", Duration::from_secs(30), || consumer.metrics().snapshot().lag == 0).await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())?;

        let accepted = sink.accepted();
        check(accepted.len() == 20, || format!("delivered twice or more: {accepted:?}"))?;
        for partition in 0..2 {
            let offsets: Vec<i64> = accepted.iter().filter(|r| r.partition == partition).map(|r| r.offset).collect();
            check(offsets == (0..10).collect::<Vec<_>>(), || format!("partition {partition} offsets: {offsets:?}"))?;
        }
        for record in &accepted {
            let i =
                produced.iter().position(|(_, value)| value.as_bytes() == record.value).ok_or("an unknown value")?;
            check(record.key.as_deref() == Some(format!("key-{i}").as_bytes()), || format!("key of {record:?}"))?;
            check(record.partition == produced[i].0 && record.topic == topic, || format!("place of {record:?}"))?;
            check(
                record.timestamp.is_some_and(|t| t.elapsed().is_ok_and(|age| age < Duration::from_secs(600))),
                || format!("timestamp of {record:?}"),
            )?;
        }
        let metrics = consumer.metrics().snapshot();
        check(
            metrics.records_consumed == 20 && metrics.records_accepted == 20 && metrics.records_committed == 20,
            || format!("{metrics:?}"),
        )?;
        let offsets = committed(broker, "reach", topic, 2).await?;
        check(offsets == [Some(10), Some(10)], || format!("committed: {offsets:?}"))
    })
}

fn lag_counts_uncommitted_records(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "lag";
    block_on(broker.create_topic(topic, 1))?;
    block_on(async {
        broker.produce(topic, &[(0, "first".to_string())]).await?;
        let mut settings = settings(broker, topic, "lag");
        settings.statistics_interval = Duration::from_millis(100);
        // A batch that waits long for more records: its records are read, not yet committed.
        settings.max_batch_wait = Duration::from_secs(4);
        let consumer = Arc::new(Consumer::start(settings).await.map_err(|e| e.to_string())?);
        let sink = Recorder::default();
        let (stop, run) = spawn_run(consumer.clone(), sink.clone());
        let lag = || consumer.metrics().snapshot().lag;
        wait_for("the first record's commit", Duration::from_secs(60), || {
            consumer.metrics().snapshot().records_committed == 1
        })
        .await?;
        wait_for("the lag to be read as 0", Duration::from_secs(30), || lag() == 0).await?;
        let more: Vec<(i32, String)> = (0..5).map(|i| (0, format!("more {i}"))).collect();
        broker.produce(topic, &more).await?;
        wait_for("the lag of the batch being collected", Duration::from_secs(30), || lag() == 5).await?;
        check(sink.accepted().len() == 1, || format!("accepted before the lag was read: {:?}", sink.accepted()))?;
        wait_for("the batch's commit and no lag", Duration::from_secs(30), || {
            consumer.metrics().snapshot().records_committed == 6 && lag() == 0
        })
        .await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())
    })
}

fn refused_batch_is_offered_again(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "refused-batch";
    block_on(broker.create_topic(topic, 1))?;
    block_on(async {
        let produced: Vec<(i32, String)> = (0..5).map(|i| (0, format!("record {i}"))).collect();
        broker.produce(topic, &produced).await?;
        let consumer = Arc::new(Consumer::start(settings(broker, topic, "refused")).await.map_err(|e| e.to_string())?);
        let (deliveries, mut delivered) = mpsc::unbounded_channel();
        let sink = Recorder { deliveries: Some(deliveries), ..Recorder::default() };
        sink.refuse(true);
        let (stop, run) = spawn_run(consumer.clone(), sink.clone());
        // Two refusals, and nothing committed while the sink refuses.
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(60), delivered.recv()).await.map_err(|_| "no delivery")?;
        }
        let offsets = committed(broker, "refused", topic, 1).await?;
        check(offsets == [None], || format!("committed before acceptance: {offsets:?}"))?;
        sink.refuse(false);
        wait_for("the acceptance", Duration::from_secs(30), || sink.accepted().len() == 5).await?;
        wait_for("the commit", Duration::from_secs(30), || consumer.metrics().snapshot().records_committed == 5)
            .await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())?;

        let offered = sink.offered();
        check(offered.len() >= 3, || format!("offered {} times", offered.len()))?;
        check(offered.iter().all(|batch| batch == &offered[0]), || format!("different batches: {offered:?}"))?;
        check(offered[0].iter().map(|r| r.offset).eq(0..5), || format!("first offer: {:?}", offered[0]))?;
        let metrics = consumer.metrics().snapshot();
        check(metrics.batches_refused as usize == offered.len() - 1 && metrics.records_consumed == 5, || {
            format!("{metrics:?}")
        })?;
        let offsets = committed(broker, "refused", topic, 1).await?;
        check(offsets == [Some(5)], || format!("committed after acceptance: {offsets:?}"))
    })
}

fn restarted_consumer_resumes(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "restart";
    block_on(broker.create_topic(topic, 1))?;
    block_on(async {
        let first: Vec<(i32, String)> = (0..5).map(|i| (0, format!("first {i}"))).collect();
        broker.produce(topic, &first).await?;
        let consumer = Arc::new(Consumer::start(settings(broker, topic, "restart")).await.map_err(|e| e.to_string())?);
        let sink = Recorder::default();
        let (stop, run) = spawn_run(consumer.clone(), sink.clone());
        wait_for("the first records", Duration::from_secs(60), || sink.accepted().len() == 5).await?;
        // Refused records are not committed: the next consumer gets them.
        sink.refuse(true);
        let second: Vec<(i32, String)> = (0..5).map(|i| (0, format!("second {i}"))).collect();
        broker.produce(topic, &second).await?;
        wait_for("a refusal", Duration::from_secs(30), || sink.offered().len() >= 2).await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())?;
        drop(consumer);

        let restarted = Arc::new(Consumer::start(settings(broker, topic, "restart")).await.map_err(|e| e.to_string())?);
        let resumed = Recorder::default();
        let (stop, run) = spawn_run(restarted.clone(), resumed.clone());
        wait_for("the resumed records", Duration::from_secs(60), || resumed.accepted().len() >= 5).await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())?;
        let values: Vec<String> =
            resumed.accepted().iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
        let expected: Vec<String> = second.into_iter().map(|(_, value)| value).collect();
        check(values == expected, || format!("resumed with {values:?}"))?;
        check(resumed.accepted()[0].offset == 5, || format!("resumed at {:?}", resumed.accepted()[0]))
    })
}

fn two_consumers_share_partitions(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "shared";
    block_on(broker.create_topic(topic, 4))?;
    block_on(async {
        let first = Arc::new(Consumer::start(settings(broker, topic, "shared")).await.map_err(|e| e.to_string())?);
        let second = Arc::new(Consumer::start(settings(broker, topic, "shared")).await.map_err(|e| e.to_string())?);
        let (first_sink, second_sink) = (Recorder::default(), Recorder::default());
        let (stop_first, run_first) = spawn_run(first.clone(), first_sink.clone());
        let (stop_second, run_second) = spawn_run(second.clone(), second_sink.clone());
        wait_for("both consumers to hold two partitions", Duration::from_secs(90), || {
            first.assigned_partitions().len() == 2 && second.assigned_partitions().len() == 2
        })
        .await?;
        let (held_first, held_second) = (first.assigned_partitions(), second.assigned_partitions());
        let all: BTreeSet<_> = held_first.iter().chain(&held_second).cloned().collect();
        check(all.len() == 4, || format!("overlapping assignments: {held_first:?} {held_second:?}"))?;

        let produced: Vec<(i32, String)> = (0..40).map(|i| (i % 4, format!("shared {i}"))).collect();
        broker.produce(topic, &produced).await?;
        wait_for("all 40 records", Duration::from_secs(60), || {
            first_sink.accepted().len() + second_sink.accepted().len() >= 40
        })
        .await?;
        let _ = stop_first.send(());
        let _ = stop_second.send(());
        run_first.await.expect("the run task").map_err(|e| e.to_string())?;
        run_second.await.expect("the run task").map_err(|e| e.to_string())?;

        for (sink, held) in [(&first_sink, &held_first), (&second_sink, &held_second)] {
            let accepted = sink.accepted();
            check(accepted.len() == 20, || format!("{} records for {held:?}", accepted.len()))?;
            check(accepted.iter().all(|r| held.contains(&(r.topic.clone(), r.partition))), || {
                format!("records outside {held:?}: {accepted:?}")
            })?;
        }
        let offsets = committed(broker, "shared", topic, 4).await?;
        check(offsets == [Some(10); 4], || format!("committed: {offsets:?}"))
    })
}

fn absent_broker_is_reported(_broker: &KafkaBroker) -> Result<(), String> {
    let [port] = free_ports();
    block_on(async {
        let mut settings = Settings::new(format!("127.0.0.1:{port}"), vec!["audit".into()], "absent");
        settings.connect_timeout = Duration::from_secs(3);
        let started = Instant::now();
        let error = match Consumer::start(settings).await {
            Ok(_) => return Err("a consumer started without a broker".to_string()),
            Err(error) => error,
        };
        let message = error.to_string();
        check(error.kind() == ErrorKind::Transient, || format!("{message}: not transient"))?;
        check(message.contains(&format!("127.0.0.1:{port}")) && message.contains("refused"), || message.clone())?;
        check(started.elapsed() < Duration::from_secs(10), || format!("took {:?}", started.elapsed()))
    })
}

fn event_hubs(broker: &KafkaBroker, key: &str, topic: &str, trusted: bool) -> Settings {
    let mut settings =
        Settings::event_hubs("localhost", &connection_string(key), topic).expect("valid Event Hubs settings");
    // The test broker's SASL_SSL port, and its own CA unless the built-in roots are tested.
    settings.brokers = broker.sasl_ssl.clone();
    if let Security::SaslSsl { ca_file, .. } = &mut settings.security {
        *ca_file = trusted.then(|| broker.ca_file.clone());
    }
    settings.librdkafka.insert("broker.address.family".into(), "v4".into());
    settings.connect_timeout = Duration::from_secs(20);
    settings.max_batch_wait = Duration::from_millis(100);
    settings
}

fn event_hubs_over_sasl_ssl(broker: &KafkaBroker) -> Result<(), String> {
    let topic = "insights-logs-kube-audit";
    block_on(broker.create_topic(topic, 2))?;
    block_on(async {
        let produced: Vec<(i32, String)> =
            (0..6).map(|i| (i % 2, format!("{{\"records\":[{{\"audit\":{i}}}]}}"))).collect();
        broker.produce(topic, &produced).await?;
        let consumer = Arc::new(
            Consumer::start(event_hubs(broker, EVENT_HUBS_KEY, topic, true)).await.map_err(|e| e.to_string())?,
        );
        let sink = Recorder::default();
        let (stop, run) = spawn_run(consumer.clone(), sink.clone());
        wait_for("the audit records over SASL_SSL", Duration::from_secs(60), || sink.accepted().len() >= 6).await?;
        let _ = stop.send(());
        run.await.expect("the run task").map_err(|e| e.to_string())?;
        let values: BTreeSet<Vec<u8>> = sink.accepted().iter().map(|r| r.value.to_vec()).collect();
        check(values == produced.iter().map(|(_, v)| v.as_bytes().to_vec()).collect(), || format!("{values:?}"))
    })
}

fn wrong_key_is_refused(broker: &KafkaBroker) -> Result<(), String> {
    block_on(async {
        let started = Instant::now();
        let error = match Consumer::start(event_hubs(broker, "d3Jvbmcta2V5", "insights-logs-kube-audit", true)).await {
            Ok(_) => return Err("a wrong key was accepted".to_string()),
            Err(error) => error,
        };
        let message = error.to_string();
        check(error.kind() == ErrorKind::Configuration, || format!("{message}: not a configuration error"))?;
        check(message.contains("authentication") && message.contains("Authentication failed"), || message.clone())?;
        check(started.elapsed() < Duration::from_secs(15), || format!("took {:?}", started.elapsed()))
    })
}

fn untrusted_certificate_is_refused(broker: &KafkaBroker) -> Result<(), String> {
    block_on(async {
        let error = match Consumer::start(event_hubs(broker, EVENT_HUBS_KEY, "insights-logs-kube-audit", false)).await {
            Ok(_) => return Err("a certificate outside the Mozilla roots was trusted".to_string()),
            Err(error) => error,
        };
        let message = error.to_string();
        check(error.kind() == ErrorKind::Configuration, || format!("{message}: not a configuration error"))?;
        check(message.contains("certificate verify failed"), || message.clone())
    })
}

fn refused_settings(broker: &KafkaBroker) -> Result<(), String> {
    block_on(async {
        let mut settings = settings(broker, "audit", "refused-settings");
        settings.librdkafka.insert("no.such.property".into(), "1".into());
        match Consumer::start(settings).await {
            Ok(_) => Err("an unknown librdkafka property was accepted".to_string()),
            Err(error) => {
                let message = error.to_string();
                check(error.kind() == ErrorKind::Configuration && message.contains("no.such.property"), || message)
            }
        }
    })
}
