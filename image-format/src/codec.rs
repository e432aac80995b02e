//! The payload codec. postcard is used only here, so the encoding of entry payloads can change in one place
//! (with a format major bump) without touching the framing or any caller.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `value` as one entry payload.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

/// Decodes one entry payload. Unless `allow_trailing`, the payload must be consumed exactly: trailing bytes
/// mean the entry was not written as this type. Files of a newer minor version may carry fields appended
/// to a struct that this build does not know; their readers pass `allow_trailing` and skip them.
pub(crate) fn decode<T: DeserializeOwned>(
    payload: &[u8],
    allow_trailing: bool,
) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload).map_err(|e| e.to_string())?;
    if rest.is_empty() || allow_trailing {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes after the record", rest.len()))
    }
}
