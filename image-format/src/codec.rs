//! The payload codec. postcard is used only here, so the encoding of entry payloads can change in one place
//! (with a format major bump) without touching the framing or any caller.
//!
//! postcard is not self-describing: a payload decodes only as exactly the type it was encoded from. That is
//! why every record kind has a schema version (see [`crate::records::kind`]): a reader decodes a payload
//! with the type of the version its file header names, never with another.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `value` as one entry payload.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

/// Decodes one entry payload, which must be consumed exactly: trailing bytes mean the entry was not
/// written as this type.
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes after the record", rest.len()))
    }
}
