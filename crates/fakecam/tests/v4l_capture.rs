//! End-to-end tests through the `v4l` crate (the same path mjpegd uses): open, negotiate,
//! mmap-stream, unplug/replug.
//!
//! Every test mounts its own camera in its own temp dir, so they run in parallel; the `FakeCam`
//! is declared after the `TempDir` so it is dropped (unmounted) first, even on panic.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use fakecam::{FakeCam, Format, FrameSource, Options};
use v4l::buffer::Type;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use common::write_jpegs;

fn capture(dev: &Device, count: usize) -> Vec<Vec<u8>> {
    let mut stream = MmapStream::with_buffers(dev, Type::VideoCapture, 4).unwrap();
    stream.set_timeout(Duration::from_secs(3));
    (0..count)
        .map(|_| {
            let (buf, meta) = stream.next().unwrap();
            buf[..meta.bytesused as usize].to_vec()
        })
        .collect()
}

#[test]
fn mjpeg_from_folder_is_byte_identical_in_order_and_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_jpegs(&tmp.path().join("frames"), 3, 64, 48);
    let cam = FakeCam::mount(
        &tmp.path().join("cam"),
        Options {
            width: 64,
            height: 48,
            fps: 60,
            format: Format::Mjpeg,
            frames: FrameSource::Dir(tmp.path().join("frames")),
            bad_every: None,
        },
    )
    .unwrap();

    let dev = Device::with_path(cam.device_path()).unwrap();
    let caps = dev.query_caps().unwrap();
    assert_eq!(caps.driver, "fakecam");
    let formats = dev.enum_formats().unwrap();
    assert_eq!(formats.len(), 1);
    assert_eq!(formats[0].fourcc, FourCC::new(b"MJPG"));
    // Ask for something else: the configured format is granted.
    let fmt = dev
        .set_format(&v4l::Format::new(1920, 1080, FourCC::new(b"YUYV")))
        .unwrap();
    assert_eq!(
        (fmt.width, fmt.height, fmt.fourcc),
        (64, 48, FourCC::new(b"MJPG"))
    );

    let frames = capture(&dev, 12);
    for (k, f) in frames.iter().enumerate() {
        assert!(
            f == &files[k % files.len()],
            "frame {k} is not file {}",
            k % files.len()
        );
    }
    assert!(cam.stats().frames_served >= 12);
}

#[test]
fn yuyv_generated_has_full_size_and_changes_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h) = (160u32, 120u32);
    let cam = FakeCam::mount(
        &tmp.path().join("cam"),
        Options {
            width: w,
            height: h,
            fps: 60,
            format: Format::Yuyv,
            frames: FrameSource::Generated,
            bad_every: None,
        },
    )
    .unwrap();
    let dev = Device::with_path(cam.device_path()).unwrap();
    let fmt = dev.format().unwrap();
    assert_eq!(fmt.fourcc, FourCC::new(b"YUYV"));
    assert_eq!((fmt.width, fmt.height), (w, h));
    assert_eq!(fmt.stride, w * 2);
    assert_eq!(fmt.size, w * h * 2);

    let frames = capture(&dev, 10);
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f.len(), (w * h * 2) as usize, "frame {k}");
    }
    for k in 1..frames.len() {
        assert_ne!(
            frames[k - 1],
            frames[k],
            "frames {} and {k} are equal",
            k - 1
        );
    }
}

#[test]
fn yuyv_from_folder_decodes_each_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_jpegs(&tmp.path().join("frames"), 3, 64, 48);
    let (w, h) = (128u32, 96u32); // scaled up from the 64x48 files
    let cam = FakeCam::mount(
        &tmp.path().join("cam"),
        Options {
            width: w,
            height: h,
            fps: 60,
            format: Format::Yuyv,
            frames: FrameSource::Dir(tmp.path().join("frames")),
            bad_every: None,
        },
    )
    .unwrap();
    let dev = Device::with_path(cam.device_path()).unwrap();
    let frames = capture(&dev, 6);
    for f in &frames {
        assert_eq!(f.len(), (w * h * 2) as usize);
    }
    for k in 1..frames.len() {
        assert_ne!(frames[k - 1], frames[k]);
    }
    assert_eq!(frames[0], frames[3], "three files loop");
}

#[test]
fn unplug_fails_the_capturing_fd_hides_the_device_and_replug_streams_again() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_jpegs(&tmp.path().join("frames"), 4, 64, 48);
    let cam = FakeCam::mount(
        &tmp.path().join("cam"),
        Options {
            width: 64,
            height: 48,
            fps: 30,
            format: Format::Mjpeg,
            frames: FrameSource::Dir(tmp.path().join("frames")),
            bad_every: None,
        },
    )
    .unwrap();
    let path = cam.device_path();

    // A client capturing in its own thread until an error.
    let (tx, rx) = mpsc::channel();
    let client_path = path.clone();
    let client = std::thread::spawn(move || {
        let dev = Device::with_path(&client_path).unwrap();
        let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 4).unwrap();
        stream.set_timeout(Duration::from_secs(5));
        loop {
            match stream.next() {
                Ok(_) => tx.send(None).unwrap(),
                Err(e) => {
                    tx.send(Some((e.raw_os_error(), Instant::now()))).unwrap();
                    return;
                }
            }
        }
    });
    for _ in 0..3 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(3)).unwrap(), None);
    }
    assert!(cam.stats().streaming);

    let unplugged_at = Instant::now();
    cam.unplug();
    let err = loop {
        match rx
            .recv_timeout(Duration::from_secs(1))
            .expect("no error within a second of unplug")
        {
            None => continue, // a frame finished just before the unplug
            Some(e) => break e,
        }
    };
    assert_eq!(err.0, Some(libc::ENODEV));
    assert!(err.1.duration_since(unplugged_at) < Duration::from_secs(1));
    client.join().unwrap();

    let st = cam.stats();
    assert!(!st.plugged && !st.streaming);
    assert_eq!(
        std::fs::metadata(&path).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        Device::with_path(&path).err().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
    cam.wait_stats(Duration::from_secs(2), |s| s.open_handles == 0)
        .unwrap();

    cam.replug();
    let dev = Device::with_path(&path).unwrap();
    let frames = capture(&dev, 5);
    for (k, f) in frames.iter().enumerate() {
        assert!(f == &files[k % files.len()], "after replug, frame {k}");
    }
}

#[test]
fn stats_track_open_handles_and_streaming() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = FakeCam::mount(
        &tmp.path().join("cam"),
        Options {
            width: 96,
            height: 64,
            fps: 60,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(cam.stats().open_handles, 0);
    {
        let dev = Device::with_path(cam.device_path()).unwrap();
        let dev2 = Device::with_path(cam.device_path()).unwrap();
        let s = cam.stats();
        assert_eq!((s.open_handles, s.total_opens), (2, 2));
        drop(dev2);
        cam.wait_stats(Duration::from_secs(2), |s| s.open_handles == 1)
            .unwrap();

        let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 3).unwrap();
        stream.set_timeout(Duration::from_secs(3));
        let (buf, meta) = stream.next().unwrap();
        // Generated MJPEG: a real JPEG (SOI ... EOI).
        let jpeg = &buf[..meta.bytesused as usize];
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9]);
        assert!(cam.stats().streaming);
    }
    let s = cam
        .wait_stats(Duration::from_secs(2), |s| s.open_handles == 0)
        .unwrap();
    assert!(!s.streaming, "closing the owner stops streaming");
    assert_eq!(s.total_opens, 2);
}
