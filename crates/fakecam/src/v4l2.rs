//! The slice of the V4L2 ABI (x86_64/aarch64 layouts of `linux/videodev2.h`) that fakecam serves.
//!
//! Structs are handled as byte buffers with explicit offsets rather than `#[repr(C)]` types: the
//! kernel copies exactly `_IOC_SIZE(cmd)` bytes in and out of a FUSE "restricted" ioctl, and
//! several of these structs hold unions, so offsets are the simplest faithful description. The
//! offsets and ioctl numbers were checked against the kernel headers with a small C program.

const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((b'V' as u32) << 8) | nr
}
const R: u32 = 2;
const W: u32 = 1;
const RW: u32 = 3;

pub const SIZE_CAPABILITY: usize = 104;
pub const SIZE_FMTDESC: usize = 64;
pub const SIZE_FORMAT: usize = 208;
pub const SIZE_FRMSIZEENUM: usize = 44;
pub const SIZE_FRMIVALENUM: usize = 52;
pub const SIZE_STREAMPARM: usize = 204;
pub const SIZE_INPUT: usize = 80;
pub const SIZE_REQUESTBUFFERS: usize = 20;
pub const SIZE_BUFFER: usize = 88;

pub const VIDIOC_QUERYCAP: u32 = ioc(R, 0, SIZE_CAPABILITY as u32);
pub const VIDIOC_ENUM_FMT: u32 = ioc(RW, 2, SIZE_FMTDESC as u32);
pub const VIDIOC_G_FMT: u32 = ioc(RW, 4, SIZE_FORMAT as u32);
pub const VIDIOC_S_FMT: u32 = ioc(RW, 5, SIZE_FORMAT as u32);
pub const VIDIOC_REQBUFS: u32 = ioc(RW, 8, SIZE_REQUESTBUFFERS as u32);
pub const VIDIOC_QUERYBUF: u32 = ioc(RW, 9, SIZE_BUFFER as u32);
pub const VIDIOC_QBUF: u32 = ioc(RW, 15, SIZE_BUFFER as u32);
pub const VIDIOC_DQBUF: u32 = ioc(RW, 17, SIZE_BUFFER as u32);
pub const VIDIOC_STREAMON: u32 = ioc(W, 18, 4);
pub const VIDIOC_STREAMOFF: u32 = ioc(W, 19, 4);
pub const VIDIOC_G_PARM: u32 = ioc(RW, 21, SIZE_STREAMPARM as u32);
pub const VIDIOC_S_PARM: u32 = ioc(RW, 22, SIZE_STREAMPARM as u32);
pub const VIDIOC_ENUMINPUT: u32 = ioc(RW, 26, SIZE_INPUT as u32);
pub const VIDIOC_G_CTRL: u32 = ioc(RW, 27, 8);
pub const VIDIOC_S_CTRL: u32 = ioc(RW, 28, 8);
pub const VIDIOC_QUERYCTRL: u32 = ioc(RW, 36, 68);
pub const VIDIOC_QUERYMENU: u32 = ioc(RW, 37, 44);
pub const VIDIOC_G_INPUT: u32 = ioc(R, 38, 4);
pub const VIDIOC_S_INPUT: u32 = ioc(RW, 39, 4);
pub const VIDIOC_TRY_FMT: u32 = ioc(RW, 64, SIZE_FORMAT as u32);
pub const VIDIOC_G_EXT_CTRLS: u32 = ioc(RW, 71, 32);
pub const VIDIOC_S_EXT_CTRLS: u32 = ioc(RW, 72, 32);
pub const VIDIOC_TRY_EXT_CTRLS: u32 = ioc(RW, 73, 32);
pub const VIDIOC_ENUM_FRAMESIZES: u32 = ioc(RW, 74, SIZE_FRMSIZEENUM as u32);
pub const VIDIOC_ENUM_FRAMEINTERVALS: u32 = ioc(RW, 75, SIZE_FRMIVALENUM as u32);
pub const VIDIOC_QUERY_EXT_CTRL: u32 = ioc(RW, 103, 232);

pub const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const MEMORY_MMAP: u32 = 1;
pub const FIELD_NONE: u32 = 1;
pub const COLORSPACE_SRGB: u32 = 8;
pub const COLORSPACE_JPEG: u32 = 7;
pub const FMT_FLAG_COMPRESSED: u32 = 1;
pub const FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const FRMIVAL_TYPE_DISCRETE: u32 = 1;
pub const CAP_TIMEPERFRAME: u32 = 0x1000;
pub const INPUT_TYPE_CAMERA: u32 = 2;
pub const BUF_CAP_SUPPORTS_MMAP: u32 = 1;

pub const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const CAP_STREAMING: u32 = 0x0400_0000;
pub const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

pub const BUF_FLAG_MAPPED: u32 = 0x0001;
pub const BUF_FLAG_QUEUED: u32 = 0x0002;
pub const BUF_FLAG_DONE: u32 = 0x0004;
pub const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x2000;

pub const PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const PIX_FMT_YUYV: u32 = fourcc(b"YUYV");

pub const fn fourcc(c: &[u8; 4]) -> u32 {
    (c[0] as u32) | ((c[1] as u32) << 8) | ((c[2] as u32) << 16) | ((c[3] as u32) << 24)
}

/// `_IOC_TYPE(cmd)`.
pub fn ioc_type(cmd: u32) -> u8 {
    ((cmd >> 8) & 0xff) as u8
}

/// Little helpers over a struct held as bytes (native endianness, as the kernel copies it).
pub trait Bytes {
    fn u32_at(&self, off: usize) -> u32;
    fn set_u32(&mut self, off: usize, v: u32);
    fn set_u64(&mut self, off: usize, v: u64);
    fn set_str(&mut self, off: usize, len: usize, s: &str);
    fn zero(&mut self, from: usize, to: usize);
}

impl Bytes for [u8] {
    fn u32_at(&self, off: usize) -> u32 {
        self.get(off..off + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
            .unwrap_or(0)
    }
    fn set_u32(&mut self, off: usize, v: u32) {
        self[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_u64(&mut self, off: usize, v: u64) {
        self[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_str(&mut self, off: usize, len: usize, s: &str) {
        let field = &mut self[off..off + len];
        field.fill(0);
        let n = s.len().min(len - 1);
        field[..n].copy_from_slice(&s.as_bytes()[..n]);
    }
    fn zero(&mut self, from: usize, to: usize) {
        self[from..to].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_kernel_headers() {
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_ENUM_FMT, 0xc040_5602);
        assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
        assert_eq!(VIDIOC_S_PARM, 0xc0cc_5616);
        assert_eq!(VIDIOC_ENUMINPUT, 0xc050_561a);
        assert_eq!(VIDIOC_G_INPUT, 0x8004_5626);
        assert_eq!(VIDIOC_ENUM_FRAMESIZES, 0xc02c_564a);
        assert_eq!(VIDIOC_ENUM_FRAMEINTERVALS, 0xc034_564b);
        assert_eq!(VIDIOC_QUERYCTRL, 0xc044_5624);
        assert_eq!(VIDIOC_QUERY_EXT_CTRL, 0xc0e8_5667);
        assert_eq!(VIDIOC_G_EXT_CTRLS, 0xc020_5647);
        assert_eq!(PIX_FMT_MJPEG, 0x4750_4a4d);
    }
}
