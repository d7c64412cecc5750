//! Size and quality variants of a camera: `?width=`, `?height=`, `?quality=` on its URLs.
//!
//! A variant is a hub of its own, as a camera is. Its transcoder reads the camera's hub as a `latest`
//! client (so a transcode that cannot keep up skips frames, counted, and never holds the original back),
//! transcodes each frame it takes on the bounded [`transcode::TranscodePool`], and publishes the result
//! under the original's sequence number and capture time. Clients of the variant then subscribe to its hub
//! with their own policy, exactly as to a camera's, and the stream writer is the same: 100 clients of
//! `?width=320` cost one transcode per frame, as one does.
//!
//! The registry ([`Variants`], one per camera) keys variants by [`VariantKey`] (the fitted size and the
//! quality, so URLs that resolve to the same picture share one) and counts leases: a variant starts with
//! its first lease (a stream, or a snapshot that found it running) and stops, transcoder and all, when the
//! last one is dropped. At most `--max-variants` run per camera; one more is refused with the reason.

pub mod transcode;

use crate::hub::{ClientMeta, SharedHub, SourceStatus};
use mjpegd_core::transcode_queue::Lane;
use mjpegd_core::variant::VariantKey;
use mjpegd_core::{HubConfig, Policy};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use transcode::TranscodePool;

/// Counters of one variant's transcoder, for `/state`.
#[derive(Debug, Default)]
pub struct VariantStats {
    /// Frames transcoded and published.
    pub frames: AtomicU64,
    /// Frames of the camera that went by while the transcoder was busy (or waiting for a slot).
    pub skipped: AtomicU64,
    /// Frames that could not be transcoded.
    pub errors: AtomicU64,
    /// The last transcode's time, in microseconds.
    pub last_us: AtomicU64,
    /// Exponentially weighted mean of transcode times (weight 1/16), in microseconds.
    pub average_us: AtomicU64,
}

/// A running variant: its hub and its transcoder's counters.
pub struct Variant {
    pub key: VariantKey,
    pub hub: Arc<SharedHub>,
    pub stats: VariantStats,
    pub since: SystemTime,
    stop: CancellationToken,
}

struct Entry {
    variant: Arc<Variant>,
    leases: usize,
}

struct Registry {
    camera: String,
    source: Arc<SharedHub>,
    buffer_memory: usize,
    entries: Mutex<BTreeMap<VariantKey, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A camera's variants.
pub struct Variants {
    registry: Arc<Registry>,
}

/// Keeps a variant running while held (a stream's whole life, or a snapshot's wait).
pub struct Lease {
    registry: Arc<Registry>,
    variant: Arc<Variant>,
}

impl Lease {
    pub fn variant(&self) -> &Arc<Variant> {
        &self.variant
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut entries = lock(&self.registry.entries);
        let key = self.variant.key;
        let last = match entries.get_mut(&key) {
            Some(e) if Arc::ptr_eq(&e.variant, &self.variant) => {
                e.leases -= 1;
                e.leases == 0
            }
            _ => false,
        };
        if last {
            entries.remove(&key);
            drop(entries);
            self.variant.stop.cancel();
            tracing::info!(camera = %self.registry.camera, variant = %key, "variant stopped: its last client left");
        }
    }
}

impl Variants {
    /// The variants of the camera whose hub is `source`; each variant's `all` clients get a backlog of
    /// `buffer_memory`, as the camera's do.
    pub fn new(camera: &str, source: Arc<SharedHub>, buffer_memory: usize) -> Variants {
        Variants {
            registry: Arc::new(Registry {
                camera: camera.to_string(),
                source,
                buffer_memory,
                entries: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A lease on variant `key`, starting it if it is not running. Past `max` running variants, the reason
    /// for the 503. `parent` ends the transcoder with the camera.
    pub fn lease(
        &self,
        key: VariantKey,
        max: usize,
        parent: &CancellationToken,
    ) -> Result<Lease, String> {
        let mut entries = lock(&self.registry.entries);
        if let Some(e) = entries.get_mut(&key) {
            e.leases += 1;
            return Ok(Lease {
                registry: self.registry.clone(),
                variant: e.variant.clone(),
            });
        }
        if entries.len() >= max {
            let running: Vec<String> = entries.keys().map(|k| k.to_string()).collect();
            return Err(format!(
                "too many variants: camera {} already transcodes {} of at most {max} (--max-variants): {}; ask for one of those, or the original",
                self.registry.camera,
                entries.len(),
                if running.is_empty() { "none".to_string() } else { running.join(", ") },
            ));
        }
        let source = self.registry.source.source();
        let hub = SharedHub::new(
            HubConfig {
                buffer_memory: self.registry.buffer_memory,
            },
            SourceStatus {
                description: format!("{} at {key}", source.description),
                width: key.width,
                height: key.height,
                desired_fps: source.desired_fps,
                ..SourceStatus::default()
            },
        );
        let variant = Arc::new(Variant {
            key,
            hub,
            stats: VariantStats::default(),
            since: SystemTime::now(),
            stop: parent.child_token(),
        });
        tokio::spawn(run(
            self.registry.source.clone(),
            variant.clone(),
            self.registry.camera.clone(),
        ));
        tracing::info!(camera = %self.registry.camera, variant = %key, "variant started");
        entries.insert(
            key,
            Entry {
                variant: variant.clone(),
                leases: 1,
            },
        );
        Ok(Lease {
            registry: self.registry.clone(),
            variant,
        })
    }

    /// A lease on variant `key` if it is running.
    pub fn running(&self, key: VariantKey) -> Option<Lease> {
        let mut entries = lock(&self.registry.entries);
        let e = entries.get_mut(&key)?;
        e.leases += 1;
        Some(Lease {
            registry: self.registry.clone(),
            variant: e.variant.clone(),
        })
    }

    /// The running variants, smallest first.
    pub fn list(&self) -> Vec<Arc<Variant>> {
        lock(&self.registry.entries)
            .values()
            .map(|e| e.variant.clone())
            .collect()
    }
}

/// The transcoder: takes the camera's newest frame whenever it is free, transcodes it, and publishes it
/// in the variant's hub under the original's number and capture time, until the variant stops.
async fn run(source: Arc<SharedHub>, variant: Arc<Variant>, camera: String) {
    let stop = variant.stop.clone();
    let pool = TranscodePool::global();
    let mut sub = source.subscribe(ClientMeta {
        addr: crate::net::Peer::Ip(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        policy: Policy::Latest,
        fps_cap: None,
        user_agent: format!("mjpegd transcoder {}", variant.key),
        stop: stop.clone(),
    });
    let mut changes = source.changes();
    let mut failing = false;
    loop {
        let Some(Ok(mut frame)) = sub.try_next() else {
            // The camera's run ended: the variant's last frame is history too.
            if source.newest().is_none() {
                variant.hub.end_run();
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = stop.cancelled() => return,
            }
            continue;
        };
        let slot = tokio::select! {
            s = pool.slot(&camera, Lane::Variant(variant.key)) => s,
            _ = stop.cancelled() => return,
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(e) => {
                // Not expected (a variant waits once); counted, and tried again with a later frame.
                variant.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%camera, variant = %variant.key, error = %e, "no transcode slot");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        // Frames that came while waiting for the slot: the newest is the one worth the work.
        if let Some(Ok(newer)) = sub.try_next() {
            frame = newer;
        }
        variant.stats.skipped.store(
            sub.entry().frames_skipped.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let result = tokio::select! {
            r = slot.transcode(frame.jpeg.clone(), variant.key) => r,
            _ = stop.cancelled() => return,
        };
        match result {
            Ok((jpeg, took)) => {
                variant
                    .hub
                    .publish_numbered(jpeg, frame.seq, frame.timestamp_us);
                let stats = &variant.stats;
                stats.frames.fetch_add(1, Ordering::Relaxed);
                let us = took.as_micros() as u64;
                stats.last_us.store(us, Ordering::Relaxed);
                let avg = stats.average_us.load(Ordering::Relaxed);
                let avg = if avg == 0 { us } else { (avg * 15 + us) / 16 };
                stats.average_us.store(avg, Ordering::Relaxed);
                if failing {
                    tracing::info!(%camera, variant = %variant.key, "transcoding works again");
                    failing = false;
                }
            }
            Err(e) => {
                variant.stats.errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(%camera, variant = %variant.key, error = %e, "a frame could not be transcoded (counted in /state; logged once until it works again)");
                    failing = true;
                }
            }
        }
        sub.sent(frame.jpeg.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn key(width: u32, height: u32) -> VariantKey {
        VariantKey {
            width,
            height,
            quality: 70,
        }
    }

    fn jpeg(width: usize, height: usize) -> Bytes {
        let pixels = vec![90u8; width * height * 3];
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width,
            pitch: width * 3,
            height,
            format: turbojpeg::PixelFormat::RGB,
        };
        Bytes::from(
            turbojpeg::compress(image, 80, turbojpeg::Subsamp::Sub2x2)
                .unwrap()
                .to_vec(),
        )
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_share_a_variant_bound_the_count_and_the_last_one_stops_it() {
        let source = SharedHub::new(HubConfig::default(), SourceStatus::default());
        let variants = Variants::new("cam", source.clone(), 1 << 20);
        let camera = CancellationToken::new();
        let a1 = variants.lease(key(160, 120), 2, &camera).unwrap();
        let a2 = variants.lease(key(160, 120), 2, &camera).unwrap();
        assert!(
            Arc::ptr_eq(a1.variant(), a2.variant()),
            "one variant per key"
        );
        let b = variants.lease(key(80, 60), 2, &camera).unwrap();
        let refused = variants.lease(key(40, 30), 2, &camera).err().unwrap();
        assert!(
            refused.contains("--max-variants") && refused.contains("80x60 q70"),
            "{refused}"
        );
        // Each variant reads the camera once.
        until("two transcoders", || source.client_count() == 2).await;
        // A frame of the camera comes out of each variant, fitted, under its number and capture time.
        let original = source.publish_numbered(jpeg(320, 240), 41, 1_700_000_000_000_000);
        until("the transcoded frame", || {
            a1.variant().hub.newest().is_some()
        })
        .await;
        let f = a1.variant().hub.newest().unwrap();
        assert_eq!(
            (f.seq, f.timestamp_us),
            (original.seq, original.timestamp_us)
        );
        let h = turbojpeg::read_header(&f.jpeg).unwrap();
        assert_eq!((h.width, h.height), (160, 120));
        // The camera's run ends: the variant's frame is history too.
        source.end_run();
        until("the variant to end its run", || {
            a1.variant().hub.newest().is_none()
        })
        .await;
        drop((a1, b));
        assert_eq!(variants.list().len(), 1, "a2 still holds its variant");
        let stopped = a2.variant().clone();
        drop(a2);
        assert!(variants.list().is_empty());
        assert!(stopped.stop.is_cancelled());
        until("the transcoders to leave the camera", || {
            source.client_count() == 0
        })
        .await;
        assert!(variants.running(key(160, 120)).is_none());
        // A camera that goes away stops its variants' transcoders.
        let c = variants.lease(key(100, 74), 2, &camera).unwrap();
        until("a transcoder", || source.client_count() == 1).await;
        camera.cancel();
        until("the transcoder to end", || source.client_count() == 0).await;
        drop(c);
    }
}
