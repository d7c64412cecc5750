//! A fake V4L2 camera for a test (crates/fakecam on a FUSE file), with its generated pattern (which its
//! `brightness` control shifts), and mjpegd serving it.

use super::{Server, TempDir};
use fakecam::{FakeCam, Format, FrameSource, Options};

/// A mounted fake camera, unmounted (and its folder removed) when dropped.
pub struct Cam {
    pub cam: FakeCam,
    pub dir: TempDir,
}

/// A fake camera generating its pattern at 320x240, 30 fps, in a folder named after `what`.
pub fn generated_camera(what: &str) -> Cam {
    let dir = TempDir::new(what);
    let mount = dir.0.join("cam");
    std::fs::create_dir_all(&mount).unwrap();
    let cam = FakeCam::mount(
        &mount,
        Options {
            width: 320,
            height: 240,
            fps: 30,
            format: Format::Mjpeg,
            frames: FrameSource::Generated,
            bad_every: None,
        },
    )
    .expect("the fake camera mounts (needs /dev/fuse and fusermount3)");
    Cam { cam, dir }
}

/// mjpegd serving `cam` at 30 fps, with `extra` arguments.
pub fn serve_camera(cam: &Cam, extra: &[&str]) -> Server {
    let device = cam.cam.device_path();
    let mut args = vec!["--device", device.to_str().unwrap(), "--fps", "30"];
    args.extend_from_slice(extra);
    Server::start(&args)
}
