//! Builds `/state` documents off the async runtime, one at a time, and shares a crowded camera's document
//! among the pollers that ask within a short time.
//!
//! Why: with thousands of streams on a camera, its document lists a page of clients but still walks
//! them all, and several dashboards polling it used to build it on the runtime's worker threads, once
//! per request: an unrelated viewer of another camera fell from 30 fps to 7-10. Now a document is built on
//! the blocking pool (the runtime's workers keep sending frames), one build at a time (single flight: a
//! crowd of pollers cannot occupy every core), and a document of a crowded camera (at least [`CROWD`]
//! clients) is reused for [`FRESH`] by every request with the same page: a crowd of pollers costs one
//! build per interval. A quiet camera's document (cheap) is built for every request, so it is always
//! current.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a crowded camera's document is served to every poller before it is built again.
pub const FRESH: Duration = Duration::from_millis(250);

/// From this many clients, a camera's document is shared for [`FRESH`].
pub const CROWD: usize = 64;

/// Documents kept at most (each key is a camera, a view and a page); older ones go first.
const MAX_KEPT: usize = 64;

/// Which document: the camera (`None`: the server's `/state`), whether it shows who watches, and the page
/// of clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub camera: Option<String>,
    pub show_clients: bool,
    pub offset: usize,
    pub limit: usize,
}

struct Built {
    at: Instant,
    body: Arc<String>,
}

/// The documents built lately; the lock is held across a build (single flight).
#[derive(Default)]
pub struct StateCache {
    built: tokio::sync::Mutex<HashMap<Key, Built>>,
}

impl StateCache {
    /// The document for `key`: a shared one built less than [`FRESH`] ago, or a new one from `build`
    /// (run on the blocking pool; it returns the body and whether it is crowded, so worth sharing).
    pub async fn get(
        &self,
        key: Key,
        build: impl FnOnce() -> (String, bool) + Send + 'static,
    ) -> Arc<String> {
        let mut built = self.built.lock().await;
        if let Some(b) = built.get(&key) {
            if b.at.elapsed() < FRESH {
                return b.body.clone();
            }
        }
        let (body, crowded) = tokio::task::spawn_blocking(build)
            .await
            .unwrap_or_else(|_| (r#"{"ok":false}"#.to_string(), false));
        let body = Arc::new(body);
        built.retain(|_, b| b.at.elapsed() < FRESH);
        if crowded && built.len() < MAX_KEPT {
            built.insert(
                key,
                Built {
                    at: Instant::now(),
                    body: body.clone(),
                },
            );
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(camera: &str) -> Key {
        Key {
            camera: Some(camera.into()),
            show_clients: true,
            offset: 0,
            limit: 100,
        }
    }

    #[tokio::test]
    async fn a_crowded_document_is_shared_for_a_while_and_a_quiet_one_never() {
        let cache = Arc::new(StateCache::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let get = |camera: &'static str, crowded: bool| {
            let (cache, builds) = (cache.clone(), builds.clone());
            async move {
                cache
                    .get(key(camera), move || {
                        let n = builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        (format!("build {n}"), crowded)
                    })
                    .await
            }
        };
        // 16 pollers at once of a crowded camera: one build between them.
        let all = futures_join(16, || get("crowded", true)).await;
        assert!(all.iter().all(|b| **b == "build 0"), "{all:?}");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        // A quiet camera: one build per request.
        let quiet = futures_join(4, || get("quiet", false)).await;
        assert_eq!(builds.load(Ordering::SeqCst), 5, "{quiet:?}");
        // After FRESH, the crowded one is built again.
        tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
        assert_eq!(*get("crowded", true).await, "build 5");
    }

    async fn futures_join<F: std::future::Future<Output = Arc<String>> + Send + 'static>(
        n: usize,
        f: impl Fn() -> F,
    ) -> Vec<Arc<String>> {
        let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(f())).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
