//! Opening files we were handed without trusting what they are.
//!
//! `File::open` on a FIFO blocks until a writer appears (forever, for `ckpt inspect fifo`),
//! and a character device can be read without end. Every file ckpt reads is opened here:
//! the path is `stat`ed and refused unless it is a regular file, then opened with
//! `O_NONBLOCK` (so even a path swapped for a FIFO between the two calls cannot block the
//! open), and the opened descriptor is `fstat`ed and checked again: what we read is what we
//! checked. `O_NONBLOCK` changes nothing for reads of a regular file.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

/// Why a path could not be opened as a regular file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A FIFO, socket, device or directory: `what` says which ("a FIFO (named pipe)").
    #[error("not a regular file: {what}")]
    NotAFile { what: &'static str },
    /// Larger than the caller's limit.
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// What kind of file this is, in words, for messages.
pub fn kind_of(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading if (and only if) it is a regular file; see the module docs.
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    let before = std::fs::metadata(path)?;
    if !before.is_file() {
        return Err(OpenError::NotAFile {
            what: kind_of(before.file_type()),
        });
    }
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let f = o.open(path)?;
    let after = f.metadata()?;
    if !after.is_file() {
        return Err(OpenError::NotAFile {
            what: kind_of(after.file_type()),
        });
    }
    Ok(f)
}

/// A whole small file as bytes: [`open_regular`], its size checked against `limit` before
/// anything is allocated, and read through `take(limit + 1)` so a file that grows meanwhile
/// still cannot push us past the limit.
pub fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    let f = open_regular(path)?;
    let len = f.metadata()?.len();
    if len > limit {
        return Err(OpenError::TooLarge { limit });
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(OpenError::TooLarge { limit });
    }
    Ok(buf)
}

/// [`read_small`] as UTF-8 text (invalid UTF-8 is an `InvalidData` I/O error).
pub fn read_small_text(path: &Path, limit: u64) -> Result<String, OpenError> {
    utf8(read_small(path, limit)?)
}

/// Bytes as UTF-8 text, invalid UTF-8 as an `InvalidData` I/O error.
pub(crate) fn utf8(buf: Vec<u8>) -> Result<String, OpenError> {
    String::from_utf8(buf).map_err(|e| {
        OpenError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_fifos_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_regular(d.path()),
            Err(OpenError::NotAFile {
                what: "a directory"
            })
        ));
        let fifo = d.path().join("pipe");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file: a FIFO (named pipe)");
        let f = d.path().join("small");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_small(&f, 10).unwrap().len(), 10);
        assert!(matches!(
            read_small(&f, 9),
            Err(OpenError::TooLarge { limit: 9 })
        ));
    }
}
