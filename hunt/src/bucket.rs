//! The store's files on S3-compatible object storage, for clusters that outgrow one volume:
//! every writer (each operator replica, each node's sensor) keeps its own embedded store as a
//! spool and copies each committed file to the bucket under the same key
//! (`<prefix>/<Table>/date=YYYY-MM-DD/hour=HH/part-<writer>-<first>-<last>.parquet`), so that
//! Trino's Hive connector reads one layout holding every writer's rows.
//!
//! The bucket is written only by uploads of whole committed files and by deletions, so a
//! reader never sees part of a file. A writer deletes in two cases only:
//! - an object of its own whose generations a larger one of the same hour covers is the
//!   input of a compaction, deleted once the merged file is up (and at the next start, should
//!   a crash come in between);
//! - an object whose hour ended before the retention is deleted, whichever writer's it is:
//!   writers come and go (a replica's name changes with every rollout, nodes are replaced),
//!   so every writer sweeps the expired hours of the layout once an hour.
//!
//! Nothing else is deleted: the bucket keeps a writer's files for the retention even when its
//! spool loses them (a node's disk replaced, its byte cap reached), and a writer whose spool
//! is new continues its generations after the bucket's, so that it never overwrites them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::schema::Table;
use crate::store::{Generations, Store, covers, file_name, parse_file_name};

/// Where the bucket is: `s3://<bucket>/<prefix>`; credentials, region and endpoint come from
/// the standard `AWS_*` variables (access keys, a web identity token for IRSA, or the
/// instance's role), and `endpoint` for S3-compatible servers (MinIO, Ceph, R2, GCS's
/// interoperability endpoint).
#[derive(Clone, Debug, Default)]
pub struct BucketSettings {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Settings over those of the environment (credentials for an embedding program).
    pub config: Vec<(AmazonS3ConfigKey, String)>,
}

impl BucketSettings {
    /// The bucket's name and the key prefix, from `s3://<bucket>[/<prefix>]`.
    pub fn location(&self) -> Result<(String, String)> {
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::BucketUrl(format!("{:?} is not an s3://<bucket>/<prefix> address", self.url)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::BucketUrl(format!("{:?} names no bucket", self.url)));
        }
        Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
    }
}

/// One of this writer's objects in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Object {
    partition: Partition,
    generations: Generations,
}

/// What one pass does: the local files to upload, then the objects to delete.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    uploads: Vec<String>,
    deletes: Vec<String>,
}

/// What a sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub uploaded_files: usize,
    pub uploaded_bytes: u64,
    pub deleted_objects: usize,
}

/// A writer's copy of its files in the bucket.
pub struct Mirror {
    bucket: Arc<dyn ObjectStore>,
    prefix: String,
    writer: String,
    retention: Duration,
    /// This writer's objects in the bucket, by key relative to the prefix.
    objects: BTreeMap<String, Object>,
    /// The hour (since the epoch) of the last sweep of every writer's expired hours.
    swept_hour: Option<i64>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("bucket", &self.bucket.to_string()).field("prefix", &self.prefix).finish()
    }
}

impl Mirror {
    /// Connects and lists the writer's objects, finishing what a crash interrupted (deleting
    /// the inputs of a compaction whose merged file is up).
    pub async fn connect(settings: &BucketSettings, writer: &str, retention: Duration) -> Result<Mirror> {
        let (bucket_name, prefix) = settings.location()?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket_name);
        if let Some(endpoint) = &settings.endpoint {
            // S3-compatible servers are addressed by path (`<endpoint>/<bucket>/<key>`), and a
            // private one often over plain HTTP inside the cluster.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        for (key, value) in &settings.config {
            builder = builder.with_config(*key, value);
        }
        let bucket = builder.build().map_err(|e| Error::BucketUrl(format!("{}: {e}", settings.url)))?;
        let mut mirror = Mirror {
            bucket: Arc::new(bucket),
            prefix,
            writer: writer.to_owned(),
            retention,
            objects: BTreeMap::new(),
            swept_hour: None,
        };
        mirror.list().await?;
        let interrupted = plan(&mirror.objects, &[], i64::MIN).deletes;
        mirror.delete(&interrupted).await?;
        info!(
            bucket = %settings.url,
            objects = mirror.objects.len(),
            next_generation = mirror.next_generation(),
            "hunting bucket connected"
        );
        Ok(mirror)
    }

    /// The first flush generation this writer may use without overwriting its objects.
    pub fn next_generation(&self) -> u64 {
        self.objects.values().map(|o| o.generations.2 + 1).max().unwrap_or(0)
    }

    /// Uploads the store's committed files the bucket lacks, then deletes the objects that
    /// compaction merged or the retention expired.
    pub async fn sync(&mut self, store: &Store, now_micros: i64) -> Result<Synced> {
        let local: Vec<(String, Object, std::path::PathBuf)> = store
            .own_files()
            .into_iter()
            .map(|(partition, generations, path)| {
                (key(partition, &generations), Object { partition, generations }, path)
            })
            .collect();
        let cutoff = now_micros - i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX);
        let candidates: Vec<(String, Object)> =
            local.iter().map(|(key, object, _)| (key.clone(), object.clone())).collect();
        let mut synced = Synced::default();
        for upload in plan(&self.objects, &candidates, cutoff).uploads {
            let Some((_, object, path)) = local.iter().find(|(key, ..)| *key == upload) else { continue };
            match self.upload(&upload, path).await {
                Ok(bytes) => {
                    synced.uploaded_files += 1;
                    synced.uploaded_bytes += bytes;
                    self.objects.insert(upload, object.clone());
                }
                // Compaction or retention removed it since it was listed: the next pass
                // uploads what replaced it.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        // Deletions are planned on what is now up, so that a merged file that failed to
        // upload keeps its inputs.
        let deletes = plan(&self.objects, &[], cutoff).deletes;
        synced.deleted_objects = deletes.len();
        self.delete(&deletes).await?;
        let hour = now_micros.div_euclid(crate::partition::MICROS_PER_HOUR);
        if self.swept_hour != Some(hour) {
            synced.deleted_objects += self.sweep_expired(cutoff).await?;
            self.swept_hour = Some(hour);
        }
        if synced != Synced::default() {
            debug!(?synced, "hunting bucket synced");
        }
        Ok(synced)
    }

    async fn list(&mut self) -> Result<()> {
        for table in Table::ALL {
            let prefix = self.object_path(table.name());
            let listed: Vec<object_store::ObjectMeta> = self
                .bucket
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| Error::Bucket { action: "listing", key: prefix.to_string(), source })?;
            for meta in listed {
                let Some((partition, name)) = located(table, &meta.location) else { continue };
                let Some(generations) = parse_file_name(&name).filter(|(w, ..)| *w == self.writer) else { continue };
                self.objects.insert(key(partition, &generations), Object { partition, generations });
            }
        }
        Ok(())
    }

    /// Deletes every writer's objects of the hours that ended before `cutoff`: a listing of
    /// each table's dates, then of the expired dates only.
    async fn sweep_expired(&mut self, cutoff: i64) -> Result<usize> {
        let listing =
            |prefix: &ObjectPath, source| Error::Bucket { action: "listing", key: prefix.to_string(), source };
        let mut expired = Vec::new();
        for table in Table::ALL {
            let table_prefix = self.object_path(table.name());
            let dates =
                self.bucket.list_with_delimiter(Some(&table_prefix)).await.map_err(|e| listing(&table_prefix, e))?;
            for date_prefix in dates.common_prefixes {
                let Some(date) = date_prefix.filename() else { continue };
                // The day's first hour: a day whose first hour has not expired has none that have.
                let Some(first_hour) = Partition::parse(table, date, "hour=00") else { continue };
                if first_hour.end_micros() > cutoff {
                    continue;
                }
                let objects: Vec<object_store::ObjectMeta> =
                    self.bucket.list(Some(&date_prefix)).try_collect().await.map_err(|e| listing(&date_prefix, e))?;
                for meta in objects {
                    if located(table, &meta.location).is_some_and(|(p, _)| p.end_micros() <= cutoff) {
                        expired.push(meta.location);
                    }
                }
            }
        }
        for location in &expired {
            self.delete_object(location).await?;
        }
        self.objects.retain(|_, o| o.partition.end_micros() > cutoff);
        if !expired.is_empty() {
            info!(objects = expired.len(), "expired hours deleted from the hunting bucket");
        }
        Ok(expired.len())
    }

    async fn upload(&self, key: &str, path: &std::path::Path) -> Result<u64> {
        let mut file = tokio::fs::File::open(path).await.map_err(crate::error::io("opening", path))?;
        let location = self.object_path(key);
        // A multipart upload past its first buffer: whole files of any size, and the object
        // appears only when the upload completes.
        let mut writer = object_store::buffered::BufWriter::new(self.bucket.clone(), location.clone());
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        let bytes = match copied {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(Error::Bucket { action: "uploading", key: location.to_string(), source: io_to_store(e) });
            }
        };
        writer.shutdown().await.map_err(|e| Error::Bucket {
            action: "uploading",
            key: location.to_string(),
            source: io_to_store(e),
        })?;
        Ok(bytes)
    }

    async fn delete(&mut self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.delete_object(&self.object_path(key)).await?;
            self.objects.remove(key);
        }
        if !keys.is_empty() {
            debug!(objects = keys.len(), "merged or expired objects deleted from the hunting bucket");
        }
        Ok(())
    }

    /// Deletes an object; one already gone is as good.
    async fn delete_object(&self, location: &ObjectPath) -> Result<()> {
        match self.bucket.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Bucket { action: "deleting", key: location.to_string(), source }),
        }
    }

    fn object_path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() { ObjectPath::from(key) } else { ObjectPath::from(format!("{}/{key}", self.prefix)) }
    }
}

/// The hour of `table` an object's path names (`…/date=…/hour=…/<name>`), and its name.
fn located(table: Table, location: &ObjectPath) -> Option<(Partition, String)> {
    let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_owned()).collect();
    let [.., date, hour, name] = parts.as_slice() else { return None };
    Some((Partition::parse(table, date, hour)?, name.clone()))
}

/// An object's key under the prefix: the same relative path as the file's in the store.
fn key(partition: Partition, (writer, first, last): &Generations) -> String {
    let (date, hour) = partition.keys();
    format!("{}/{date}/{hour}/{}", partition.table.name(), file_name(writer, *first, *last))
}

fn io_to_store(error: std::io::Error) -> object_store::Error {
    object_store::Error::Generic { store: "S3", source: Box::new(error) }
}

/// Which of `local` to upload (those the bucket lacks and the retention keeps), and which
/// objects to delete afterwards: those a larger object (or upload) of the same hour covers,
/// and those of hours that ended before `cutoff`.
fn plan(objects: &BTreeMap<String, Object>, local: &[(String, Object)], cutoff: i64) -> Plan {
    let expired = |o: &Object| o.partition.end_micros() <= cutoff;
    let uploads: Vec<&(String, Object)> =
        local.iter().filter(|(key, o)| !objects.contains_key(key) && !expired(o)).collect();
    let after: Vec<(&String, &Object)> = objects.iter().chain(uploads.iter().map(|(k, o)| (k, o))).collect();
    let deletes = after
        .iter()
        .filter(|(_, o)| {
            expired(o)
                || after
                    .iter()
                    .any(|(_, other)| other.partition == o.partition && covers(&other.generations, &o.generations))
        })
        .map(|(key, _)| (*key).clone())
        .collect();
    Plan { uploads: uploads.into_iter().map(|(key, _)| key.clone()).collect(), deletes }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = crate::partition::MICROS_PER_HOUR;

    fn object(hour: i64, first: u64, last: u64) -> (String, Object) {
        let partition = Partition { hour, table: Table::CloudProcessEvents };
        let generations = ("node-a".to_owned(), first, last);
        (key(partition, &generations), Object { partition, generations })
    }

    #[test]
    fn keys_are_the_stores_relative_paths() {
        let (key, _) = object(491_000, 3, 9);
        assert_eq!(key, "CloudProcessEvents/date=2026-01-05/hour=08/part-node-a-000000000003-000000000009.parquet");
    }

    #[test]
    fn new_files_are_uploaded_and_what_a_merge_covers_is_deleted_after() {
        let objects: BTreeMap<String, Object> = [object(10, 0, 0), object(10, 1, 1), object(11, 2, 2)].into();
        let merged = object(10, 0, 1);
        let fresh = object(11, 3, 3);
        let plan = plan(&objects, &[merged.clone(), fresh.clone(), object(11, 2, 2)], 0);
        assert_eq!(plan.uploads, vec![merged.0, fresh.0]);
        assert_eq!(plan.deletes, vec![object(10, 0, 0).0, object(10, 1, 1).0]);
    }

    #[test]
    fn expired_hours_are_deleted_and_not_uploaded() {
        let objects: BTreeMap<String, Object> = [object(10, 0, 0), object(12, 1, 1)].into();
        let plan = plan(&objects, &[object(10, 5, 5), object(12, 6, 6)], 11 * HOUR);
        assert_eq!(plan.uploads, vec![object(12, 6, 6).0]);
        assert_eq!(plan.deletes, vec![object(10, 0, 0).0]);
    }

    #[test]
    fn objects_a_new_spool_lacks_are_kept() {
        let objects: BTreeMap<String, Object> = [object(10, 0, 4), object(11, 5, 5)].into();
        let plan = plan(&objects, &[object(11, 6, 6)], 0);
        assert_eq!(plan, Plan { uploads: vec![object(11, 6, 6).0], deletes: vec![] });
    }

    #[test]
    fn a_merge_in_another_hour_covers_nothing_here() {
        let objects: BTreeMap<String, Object> = [object(10, 0, 0), object(11, 0, 3)].into();
        assert!(plan(&objects, &[], 0).deletes.is_empty());
    }

    #[test]
    fn bucket_addresses_are_checked() {
        let at = |url: &str| BucketSettings { url: url.into(), ..BucketSettings::default() }.location();
        assert_eq!(at("s3://hunting/riposte/prod/").unwrap(), ("hunting".into(), "riposte/prod".into()));
        assert_eq!(at("s3://hunting").unwrap(), ("hunting".into(), String::new()));
        assert!(matches!(at("https://hunting/x"), Err(Error::BucketUrl(_))));
        assert!(matches!(at("s3:///x"), Err(Error::BucketUrl(_))));
    }
}
