//! Turning a camera's picture at the source (`rotate`, `flip`), without decoding it.
//!
//! Cameras are mounted upside down or sideways; turning the picture once here, before the hub, means
//! streams, snapshots, size variants, recordings and `/state` all see the same turned picture, and no
//! client needs a rotation option of its own. libjpeg-turbo's lossless transform moves the DCT
//! coefficients (as `jpegtran` does): no decode, no re-encode, no quality lost.
//!
//! A lossless transform works on whole MCU blocks (8x8 pixels, or 16 wide and/or 16 high with chroma
//! subsampling). An edge block that is only partly inside the picture cannot move to the top or left, so
//! it is trimmed, as `jpegtran -trim` does: the turned picture can be up to 15 pixels narrower or shorter
//! (7 without subsampling) than the source's.
//!
//! TurboJPEG's transform handle is not `Send`, and a transform of a 1080p frame takes milliseconds, so
//! each turning source has its own worker thread that owns the handle (set up once) and works one frame
//! at a time, off the async runtime.

use bytes::Bytes;
use std::fmt;
use tokio::sync::{mpsc, oneshot};
use turbojpeg::{Transform, TransformOp};

/// A mirror image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    Horizontal,
    Vertical,
}

impl Flip {
    pub fn as_str(self) -> &'static str {
        match self {
            Flip::Horizontal => "horizontal",
            Flip::Vertical => "vertical",
        }
    }
}

/// How a camera's picture is turned: flipped first (if asked), then rotated clockwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Orientation {
    /// Degrees clockwise: 0, 90, 180 or 270.
    pub rotate: u16,
    pub flip: Option<Flip>,
}

impl Orientation {
    /// Parses `rotate` (a number of degrees clockwise).
    pub fn parse_rotate(s: &str) -> Result<u16, String> {
        match s.trim() {
            "0" => Ok(0),
            "90" => Ok(90),
            "180" => Ok(180),
            "270" => Ok(270),
            other => Err(format!(
                "rotate: expected 0, 90, 180 or 270 (degrees clockwise), not {:?}",
                other.chars().take(32).collect::<String>()
            )),
        }
    }

    /// Parses `flip`.
    pub fn parse_flip(s: &str) -> Result<Option<Flip>, String> {
        match s.trim() {
            "none" => Ok(None),
            "horizontal" => Ok(Some(Flip::Horizontal)),
            "vertical" => Ok(Some(Flip::Vertical)),
            other => Err(format!(
                "flip: expected horizontal, vertical or none, not {:?}",
                other.chars().take(32).collect::<String>()
            )),
        }
    }

    /// Whether frames pass untouched.
    pub fn is_identity(&self) -> bool {
        self.op() == TransformOp::None
    }

    /// Whether width and height trade places.
    pub fn swaps_sides(&self) -> bool {
        self.rotate % 180 == 90
    }

    /// The one lossless operation that flips, then rotates.
    fn op(&self) -> TransformOp {
        use Flip::{Horizontal as H, Vertical as V};
        match (self.flip, self.rotate) {
            (None, 90) => TransformOp::Rot90,
            (None, 180) => TransformOp::Rot180,
            (None, 270) => TransformOp::Rot270,
            (None, _) => TransformOp::None,
            (Some(H), 90) | (Some(V), 270) => TransformOp::Transverse,
            (Some(H), 270) | (Some(V), 90) => TransformOp::Transpose,
            (Some(H), 180) => TransformOp::Vflip,
            (Some(V), 180) => TransformOp::Hflip,
            (Some(H), _) => TransformOp::Hflip,
            (Some(V), _) => TransformOp::Vflip,
        }
    }

    fn transform(&self) -> Transform {
        let mut t = Transform::op(self.op());
        t.trim = true;
        t
    }
}

impl fmt::Display for Orientation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flip {
            Some(Flip::Horizontal) => f.write_str("flipped horizontally, ")?,
            Some(Flip::Vertical) => f.write_str("flipped vertically, ")?,
            None => {}
        }
        write!(f, "rotated {} degrees", self.rotate)
    }
}

/// Why a frame could not be turned (it is dropped and counted).
#[derive(Debug)]
pub struct OrientError(pub String);

impl fmt::Display for OrientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct Job {
    jpeg: Bytes,
    reply: oneshot::Sender<Result<Vec<u8>, OrientError>>,
}

/// Turns one source's frames on its own worker thread (started at the first frame, ended when this is
/// dropped).
pub struct Orienter {
    orientation: Orientation,
    jobs: Option<mpsc::Sender<Job>>,
}

impl Orienter {
    pub fn new(orientation: Orientation) -> Orienter {
        Orienter {
            orientation,
            jobs: None,
        }
    }

    /// The frame turned. A frame libjpeg cannot read, or a worker that cannot start, is an error, never a
    /// panic.
    pub async fn apply(&mut self, jpeg: Bytes) -> Result<Bytes, OrientError> {
        let jobs = match &self.jobs {
            Some(jobs) if !jobs.is_closed() => jobs.clone(),
            _ => {
                let jobs = start(self.orientation)?;
                self.jobs = Some(jobs.clone());
                jobs
            }
        };
        let (reply, turned) = oneshot::channel();
        jobs.send(Job { jpeg, reply })
            .await
            .map_err(|_| OrientError("the orientation worker ended".into()))?;
        match turned.await {
            Ok(r) => r.map(Bytes::from),
            Err(_) => Err(OrientError("the orientation worker ended".into())),
        }
    }
}

/// Starts a worker that owns one transform handle.
fn start(orientation: Orientation) -> Result<mpsc::Sender<Job>, OrientError> {
    let (tx, mut rx) = mpsc::channel::<Job>(1);
    let transform = orientation.transform();
    std::thread::Builder::new()
        .name("mjpegd-orient".into())
        .spawn(move || {
            let mut transformer = match turbojpeg::Transformer::new() {
                Ok(t) => t,
                Err(e) => {
                    let e = format!("cannot set up the lossless transform: {e}");
                    while let Some(job) = rx.blocking_recv() {
                        let _ = job.reply.send(Err(OrientError(e.clone())));
                    }
                    return;
                }
            };
            while let Some(job) = rx.blocking_recv() {
                let turned = transformer
                    .transform_to_vec(&transform, &job.jpeg)
                    .map_err(|e| OrientError(format!("cannot turn the frame: {e}")));
                let _ = job.reply.send(turned);
            }
        })
        .map_err(|e| OrientError(format!("cannot start the orientation worker: {e}")))?;
    Ok(tx)
}

/// Turns one frame on the calling thread (for benchmarks and tests).
pub fn turn_blocking(
    transformer: &mut turbojpeg::Transformer,
    orientation: Orientation,
    jpeg: &[u8],
) -> Result<Vec<u8>, OrientError> {
    transformer
        .transform_to_vec(&orientation.transform(), jpeg)
        .map_err(|e| OrientError(format!("cannot turn the frame: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 4:2:0 JPEG of a gradient in which every pixel differs from its neighbours.
    pub(crate) fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                pixels.extend([(x * 6) as u8, (y * 10) as u8, ((x + y) * 3) as u8]);
            }
        }
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, 95, turbojpeg::Subsamp::Sub2x2)
            .unwrap()
            .to_vec()
    }

    fn decode(jpeg: &[u8]) -> turbojpeg::Image<Vec<u8>> {
        turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB).unwrap()
    }

    #[test]
    fn names_and_the_operation_they_make() {
        assert_eq!(Orientation::parse_rotate("90"), Ok(90));
        assert!(Orientation::parse_rotate("45").is_err());
        assert!(Orientation::parse_rotate("-90").is_err());
        assert_eq!(
            Orientation::parse_flip("vertical"),
            Ok(Some(Flip::Vertical))
        );
        assert!(Orientation::parse_flip("diagonal").is_err());
        assert!(Orientation::default().is_identity());
        let o = |rotate, flip| Orientation { rotate, flip };
        assert_eq!(o(90, Some(Flip::Horizontal)).op(), TransformOp::Transverse);
        assert_eq!(o(270, Some(Flip::Horizontal)).op(), TransformOp::Transpose);
        assert_eq!(o(180, Some(Flip::Vertical)).op(), TransformOp::Hflip);
        assert!(o(270, None).swaps_sides() && !o(180, None).swaps_sides());
    }

    #[test]
    fn a_quarter_turn_moves_every_pixel_and_trims_the_partial_blocks() {
        let source = picture(40, 24);
        let before = decode(&source);
        let mut t = turbojpeg::Transformer::new().unwrap();
        let turned = turn_blocking(
            &mut t,
            Orientation {
                rotate: 90,
                flip: None,
            },
            &source,
        )
        .unwrap();
        let after = decode(&turned);
        // 4:2:0: 16x16 blocks. The bottom edge's partial blocks would have to move to the left: the
        // 8 rows below 16 are trimmed (the right edge's partial ones end up at the bottom, and stay).
        assert_eq!((after.width, after.height), (16, 40));
        // Clockwise: the source's bottom-left corner is the top-left one now.
        let px = |img: &turbojpeg::Image<Vec<u8>>, x: usize, y: usize| {
            let at = y * img.pitch + x * 3;
            [img.pixels[at], img.pixels[at + 1], img.pixels[at + 2]]
        };
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(a, b)| a.abs_diff(b) <= 12);
        assert!(close(px(&after, 0, 0), px(&before, 0, 15)));
        assert!(close(px(&after, 15, 0), px(&before, 0, 0)));
        assert!(close(px(&after, 15, 39), px(&before, 39, 0)));
        assert!(close(px(&after, 0, 39), px(&before, 39, 15)));
    }

    #[tokio::test]
    async fn a_garbled_frame_is_an_error_and_the_worker_goes_on() {
        let mut o = Orienter::new(Orientation {
            rotate: 180,
            flip: None,
        });
        let good = Bytes::from(picture(32, 32));
        let mut garbled = good.to_vec();
        let sof = garbled.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        garbled[sof + 9] = 7; // seven components
        assert!(o.apply(Bytes::from(garbled)).await.is_err());
        assert!(o
            .apply(Bytes::from_static(b"\xFF\xD8\xFF\xD9"))
            .await
            .is_err());
        let turned = o.apply(good).await.unwrap();
        assert_eq!(decode(&turned).width, 32);
    }
}
