//! A corrupt length never turns into a big allocation: this test binary counts the largest single
//! allocation while the reader handles hostile lengths (in the framing and inside a postcard payload).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Nested;
use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::ImageError;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records the largest requested size.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn hostile_lengths_do_not_allocate() {
    let header = encode_records::<Nested>("x", &[]).unwrap();

    // Framing: 64 MiB - 1 claimed, 8 bytes present.
    let mut claim = header.clone();
    claim.extend_from_slice(&((64u32 << 20) - 1).to_le_bytes());
    claim.extend_from_slice(&[0u8; 12]);
    // Payload: id 0, empty name, then a Vec<Vec<u8>> claiming u32::MAX elements (varint), with a valid crc.
    let mut inner = header.clone();
    inner.extend_from_slice(&frame(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]));

    LARGEST.store(0, Ordering::Relaxed);
    let a = decode_records::<Nested>("x", &claim).unwrap_err();
    let b = decode_records::<Nested>("x", &inner).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(matches!(a, ImageError::Truncated { .. }), "{a}");
    assert!(matches!(b, ImageError::Decode { offset: 16, .. }), "{b}");
    assert!(largest <= 1 << 20, "largest allocation was {largest} bytes");
}
