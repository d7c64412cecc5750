//! `fakecam`: mount a fake V4L2 camera and serve it until SIGINT/SIGTERM.
//!
//! SIGUSR1 unplugs the device, SIGUSR2 plugs it back in. The device path is printed on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use fakecam::{FakeCam, Format, FrameSource, Options};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A fake V4L2 camera on a FUSE file (device at MOUNT/video0)"
)]
struct Args {
    /// Directory to mount on (created if missing); the device is DIR/video0.
    #[arg(long, value_name = "DIR")]
    mount: PathBuf,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Initial frame rate (clients may change it with S_PARM, 1..=120).
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, value_enum, default_value_t = FormatArg::Mjpeg)]
    format: FormatArg,
    /// Folder of *.jpg served in name order, looping; default: a generated moving pattern.
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,
    /// Every Nth buffer is damaged: truncated to half, then empty, alternately.
    #[arg(long, value_name = "N")]
    bad_every: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Mjpeg,
    Yuyv,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Block the signals before any thread exists, so every thread inherits the mask and the
    // main thread receives them all through sigwait.
    let set = signal_set(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2]);
    // SAFETY: `set` is an initialised sigset_t.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    let opts = Options {
        width: args.width,
        height: args.height,
        fps: args.fps,
        format: match args.format {
            FormatArg::Mjpeg => Format::Mjpeg,
            FormatArg::Yuyv => Format::Yuyv,
        },
        frames: args
            .frames
            .map(FrameSource::Dir)
            .unwrap_or(FrameSource::Generated),
        bad_every: args.bad_every,
    };
    let cam = match FakeCam::mount(&args.mount, opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fakecam: cannot mount on {}: {e}", args.mount.display());
            return ExitCode::FAILURE;
        }
    };
    println!("{}", cam.device_path().display());

    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: valid set and out pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        match sig {
            libc::SIGUSR1 => {
                cam.unplug();
                eprintln!("fakecam: unplugged");
            }
            libc::SIGUSR2 => {
                cam.replug();
                eprintln!("fakecam: replugged");
            }
            _ => break,
        }
    }
    let stats = cam.stats();
    drop(cam);
    eprintln!(
        "fakecam: unmounted ({} opens, {} frames served)",
        stats.total_opens, stats.frames_served
    );
    ExitCode::SUCCESS
}

fn signal_set(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}
