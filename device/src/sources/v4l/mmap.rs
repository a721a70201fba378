//! V4L2 memory-mapped streaming capture: what the `v4l` crate's `io::mmap::Stream` does
//! (REQBUFS, QUERYBUF + mmap per buffer, QBUF, STREAMON, poll, DQBUF), with a teardown that
//! cannot take the process down. v4l 0.14's `Stream` and `Arena` panic in `drop` when
//! STREAMOFF or REQBUFS(0) fails with anything but ENODEV, and the second panic, raised
//! while the first unwinds, aborts: a camera answering EIO (a failing USB link) killed the
//! whole device (tests/v4l2_fake.rs reproduces it). Here teardown errors are logged, the
//! mappings are always released, and the descriptor is closed by the `Device` after it.

use std::ffi::c_void;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use v4l::buffer::{Flags, Type};
use v4l::device::Handle;
use v4l::memory::Memory;
use v4l::v4l2;
use v4l::v4l_sys::{v4l2_buffer, v4l2_requestbuffers};
use v4l::Device;

/// One dequeued buffer's description.
pub struct Dequeued {
    pub bytesused: usize,
    pub flags: Flags,
    /// The driver's timestamp (seconds, microseconds).
    pub timestamp: (i64, i64),
}

pub struct MmapCapture {
    handle: Arc<Handle>,
    /// Each buffer's mapping: address and length.
    maps: Vec<(*mut c_void, usize)>,
    streaming: bool,
    /// The buffer handed out by the last `next`, queued again by the next one.
    out: Option<u32>,
    timeout_ms: i32,
}

fn buffer(index: u32) -> v4l2_buffer {
    // SAFETY: v4l2_buffer is a C struct of integers, a union of integers and pointers, and a
    // timeval: all zeroes is a valid value (as the kernel headers' users write it).
    let mut b: v4l2_buffer = unsafe { std::mem::zeroed() };
    b.type_ = Type::VideoCapture as u32;
    b.memory = Memory::Mmap as u32;
    b.index = index;
    b
}

fn ioctl<T>(handle: &Handle, request: v4l2::vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the structure `request` reads and writes (the callers pair them as the
    // V4L2 API defines), valid and exclusively borrowed for the call.
    unsafe { v4l2::ioctl(handle.fd(), request, arg as *mut T as *mut c_void) }
}

fn requestbuffers(count: u32) -> v4l2_requestbuffers {
    // SAFETY: a C struct of integers: all zeroes is valid.
    let mut r: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
    r.type_ = Type::VideoCapture as u32;
    r.memory = Memory::Mmap as u32;
    r.count = count;
    r
}

impl MmapCapture {
    /// Ask the driver for `count` buffers and map them; dequeues wait at most `timeout`.
    pub fn new(dev: &Device, count: u32, timeout: Duration) -> io::Result<MmapCapture> {
        let handle = dev.handle();
        let mut req = requestbuffers(count);
        ioctl(&handle, v4l2::vidioc::VIDIOC_REQBUFS, &mut req)?;
        let mut cap = MmapCapture {
            handle,
            maps: Vec::with_capacity(req.count as usize),
            streaming: false,
            out: None,
            timeout_ms: timeout.as_millis().clamp(1, i32::MAX as u128) as i32,
        };
        // A failure part of the way leaves `cap` to unmap what was mapped.
        for index in 0..req.count {
            let mut b = buffer(index);
            ioctl(&cap.handle, v4l2::vidioc::VIDIOC_QUERYBUF, &mut b)?;
            let len = b.length as usize;
            // SAFETY: maps `len` bytes of the driver's buffer at the offset it gave for it;
            // the mapping is released in drop and only read through `next`'s slices.
            let ptr = unsafe {
                v4l2::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    cap.handle.fd(),
                    b.m.offset as libc::off_t,
                )?
            };
            cap.maps.push((ptr, len));
        }
        Ok(cap)
    }

    /// The next filled buffer: its bytes (the `bytesused` first ones) and description. An
    /// error, a timeout (`TimedOut`) included, means the camera stopped delivering.
    pub fn next(&mut self) -> io::Result<(&[u8], Dequeued)> {
        if !self.streaming {
            for index in 0..self.maps.len() as u32 {
                ioctl(&self.handle, v4l2::vidioc::VIDIOC_QBUF, &mut buffer(index))?;
            }
            let mut typ = Type::VideoCapture as u32;
            ioctl(&self.handle, v4l2::vidioc::VIDIOC_STREAMON, &mut typ)?;
            self.streaming = true;
        } else if let Some(index) = self.out.take() {
            ioctl(&self.handle, v4l2::vidioc::VIDIOC_QBUF, &mut buffer(index))?;
        }
        if self.handle.poll(libc::POLLIN, self.timeout_ms)? == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame within the stall time"));
        }
        let mut b = buffer(0);
        ioctl(&self.handle, v4l2::vidioc::VIDIOC_DQBUF, &mut b)?;
        let (ptr, len) = *self.maps.get(b.index as usize).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the driver dequeued buffer {}", b.index))
        })?;
        self.out = Some(b.index);
        // SAFETY: the mapping made in `new` for this buffer, alive until drop; the driver
        // does not write a dequeued buffer until it is queued again, which needs `&mut self`.
        let data = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        // time_t and suseconds_t are 32-bit on 32-bit ARM.
        #[allow(clippy::unnecessary_cast)]
        let meta = Dequeued {
            bytesused: (b.bytesused as usize).min(len),
            flags: Flags::from(b.flags),
            timestamp: (b.timestamp.tv_sec as i64, b.timestamp.tv_usec as i64),
        };
        Ok((&data[..meta.bytesused], meta))
    }
}

impl Drop for MmapCapture {
    fn drop(&mut self) {
        // ENODEV (the camera unplugged) is expected here; anything else is worth a line.
        let report = |what: &str, r: io::Result<()>| match r {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                tracing::warn!("camera: {what} failed while closing ({e}); closing anyway")
            }
            _ => {}
        };
        if self.streaming {
            let mut typ = Type::VideoCapture as u32;
            report("VIDIOC_STREAMOFF", ioctl(&self.handle, v4l2::vidioc::VIDIOC_STREAMOFF, &mut typ));
        }
        for &(ptr, len) in &self.maps {
            // SAFETY: a mapping made in `new`, unmapped once; no slice of it outlives
            // `&mut self`.
            report("munmap", unsafe { v4l2::munmap(ptr, len) });
        }
        if !self.maps.is_empty() {
            report("VIDIOC_REQBUFS(0)", ioctl(&self.handle, v4l2::vidioc::VIDIOC_REQBUFS, &mut requestbuffers(0)));
        }
    }
}
