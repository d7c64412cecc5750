//! Replaying recorded frames: a folder of JPEGs in name order, or a `.mjpeg` file (concatenated JPEGs),
//! at a steady frame rate, looping.

use super::pipe::FrameReader;
use super::{Captured, Source, SourceError, SourceInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::{Interval, MissedTickBehavior};

/// The frames to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesFrom {
    /// Every `*.jpg`/`*.jpeg` in the folder, sorted by name.
    Dir(PathBuf),
    /// A file of concatenated JPEGs.
    Mjpeg(PathBuf),
}

/// A replay source.
pub struct Files {
    from: FilesFrom,
    fps: f64,
    ticker: Option<Interval>,
    state: Option<Replay>,
}

enum Replay {
    Dir { files: Vec<PathBuf>, next: usize },
    Mjpeg(Box<FrameReader<tokio::fs::File>>),
}

impl Files {
    pub fn new(from: FilesFrom, fps: f64) -> Files {
        Files {
            from,
            fps,
            ticker: None,
            state: None,
        }
    }
}

fn list_jpegs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl Source for Files {
    fn describe(&self) -> String {
        match &self.from {
            FilesFrom::Dir(d) => format!("JPEG files in {}", d.display()),
            FilesFrom::Mjpeg(f) => format!("MJPEG file {}", f.display()),
        }
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        let (state, first) = match &self.from {
            FilesFrom::Dir(dir) => {
                let files = list_jpegs(dir)
                    .map_err(|e| SourceError::unavailable(format!("{}: {e}", dir.display())))?;
                let Some(first) = files.first() else {
                    return Err(SourceError::unavailable(format!(
                        "{}: no .jpg files",
                        dir.display()
                    )));
                };
                let first = tokio::fs::read(first).await.map_err(SourceError::from)?;
                (Replay::Dir { files, next: 0 }, first)
            }
            FilesFrom::Mjpeg(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| SourceError::unavailable(format!("{}: {e}", path.display())))?;
                let mut probe = FrameReader::new(file);
                let first = match probe.next().await {
                    Ok(Some(f)) => f.jpeg.to_vec(),
                    _ => {
                        return Err(SourceError::unavailable(format!(
                            "{}: no JPEG in the file",
                            path.display()
                        )))
                    }
                };
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(SourceError::from)?;
                (Replay::Mjpeg(Box::new(FrameReader::new(file))), first)
            }
        };
        let (width, height) = mjpegd_core::parse::jpeg::check(&first)
            .map(|info| (info.width as u32, info.height as u32))
            .unwrap_or((0, 0));
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / self.fps.max(0.001)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        self.ticker = Some(ticker);
        self.state = Some(state);
        Ok(SourceInfo {
            width,
            height,
            fps: self.fps,
            encoder: crate::hub::Encoder::None,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let (Some(ticker), Some(state)) = (self.ticker.as_mut(), self.state.as_mut()) else {
            return Err(SourceError::broken("not open"));
        };
        ticker.tick().await;
        let jpeg = match state {
            Replay::Dir { files, next } => {
                let path = &files[*next % files.len()];
                *next = (*next + 1) % files.len();
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| SourceError::unavailable(format!("{}: {e}", path.display())))?;
                bytes::Bytes::from(bytes)
            }
            Replay::Mjpeg(reader) => {
                let frame = match reader.next().await.map_err(SourceError::from)? {
                    Some(f) => f,
                    None => {
                        // Loop: start the file again.
                        let FilesFrom::Mjpeg(path) = &self.from else {
                            unreachable!()
                        };
                        let file = tokio::fs::File::open(path)
                            .await
                            .map_err(SourceError::from)?;
                        **reader = FrameReader::new(file);
                        reader
                            .next()
                            .await
                            .map_err(SourceError::from)?
                            .ok_or_else(|| SourceError::unavailable("the file is empty now"))?
                    }
                };
                frame.jpeg
            }
        };
        Ok(Captured {
            jpeg,
            at: SystemTime::now(),
        })
    }

    fn close(&mut self) {
        self.ticker = None;
        self.state = None;
    }
}
