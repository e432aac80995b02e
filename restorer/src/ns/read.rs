//! Reading an image's namespace records, with errors that name the file.

use std::path::PathBuf;

use dormant_image::records::NsState;
use dormant_image::Record;
use dormant_image::{ImageError, ImageReader};

use super::error::{NsRestoreError, Result};

/// An image being planned from.
pub(super) struct Source<'a> {
    pub(super) img: &'a ImageReader,
    pub(super) dir: PathBuf,
}

impl<'a> Source<'a> {
    pub(super) fn new(img: &'a ImageReader) -> Self {
        Source {
            img,
            dir: img.dir().to_owned(),
        }
    }

    /// The error of reading `file`.
    pub(super) fn err(&self, file: &str) -> impl FnOnce(ImageError) -> NsRestoreError {
        let dir = self.dir.clone();
        let file = file.to_owned();
        move |source| NsRestoreError::Image { dir, file, source }
    }

    pub(super) fn bad(&self, reason: String) -> NsRestoreError {
        NsRestoreError::BadImage {
            dir: self.dir.clone(),
            reason,
        }
    }

    pub(super) fn single<T: Record>(&self, file: &str) -> Result<T> {
        self.img.read_single(file).map_err(self.err(file))
    }

    pub(super) fn records<T: Record>(&self, file: &str) -> Result<Vec<T>> {
        self.img.read_records(file).map_err(self.err(file))
    }

    /// The namespace state in `file`, which must be of the kind `want` picks.
    pub(super) fn state<T>(
        &self,
        file: &str,
        want: impl FnOnce(NsState) -> Result<T, NsState>,
    ) -> Result<T> {
        want(self.single::<NsState>(file)?)
            .map_err(|other| self.bad(format!("{file} holds {other:?}")))
    }
}
