//! Feeds arbitrary bytes to the record file reader as every record type: it must return an error or
//! records, never panic, hang or allocate beyond its bounds. The first byte picks the type; the rest is the
//! file, optionally behind a valid header so the entry framing and the payload decoder get exercised.
#![no_main]

use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::records::{Fd, Mm, PsTreeEntry, RegFile, ShmemObject, TaskCore, ThreadCore};
use dormant_image::{Inventory, PageExtent, Record};
use libfuzzer_sys::fuzz_target;

fn feed<R: Record>(with_header: bool, body: &[u8]) {
    if with_header {
        let Ok(mut bytes) = encode_records::<R>("fuzz", &[]) else {
            return;
        };
        bytes.extend_from_slice(body);
        let _ = decode_records::<R>("fuzz", &bytes);
    } else {
        let _ = decode_records::<R>("fuzz", body);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let with_header = sel & 0x80 != 0;
    match sel & 0x0f {
        0 => feed::<Inventory>(with_header, body),
        1 => feed::<PageExtent>(with_header, body),
        2 => feed::<PsTreeEntry>(with_header, body),
        3 => feed::<TaskCore>(with_header, body),
        4 => feed::<ThreadCore>(with_header, body),
        5 => feed::<Mm>(with_header, body),
        6 => feed::<RegFile>(with_header, body),
        7 => feed::<Fd>(with_header, body),
        _ => feed::<ShmemObject>(with_header, body),
    }
});
