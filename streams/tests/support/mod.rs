pub mod kafka_broker;
