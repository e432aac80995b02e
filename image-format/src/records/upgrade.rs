//! Older schema versions of a record kind, kept so that old images are still read (see
//! `docs/image-format.md`): the conversion each kept version implements. Apart from the kind table
//! (`kind.rs`) so that the record files that keep an old version need not import the table that lists them.

use serde::de::DeserializeOwned;

use crate::codec;

/// An older schema version of a record, kept so that images written with it are still read: the old type
/// (decoded exactly as it was encoded) and its conversion into the current one. A conversion must never
/// invent state that a restore would then trust: a field the old version did not carry gets the value that
/// means "not known" (and the restorer must treat it so), or the conversion fails naming what is missing.
pub trait Upgrade<New>: DeserializeOwned {
    fn upgrade(self) -> Result<New, String>;
}

/// Decodes `payload` as `Old` and upgrades it: what [`Record::decode_older`] does for a kept version.
pub fn decode_upgraded<Old: Upgrade<New>, New>(payload: &[u8]) -> Result<New, String> {
    codec::decode::<Old>(payload)?.upgrade()
}
