//! Reading whole files and archive members with byte counting, so that every failure can say
//! where it happened, and with gzip recognised by its magic bytes rather than by its name.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::error::{DataError, Result};

/// The two first bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Counts the bytes that pass through a reader (the compressed position in an archive).
pub(crate) struct Counting<R> {
    inner: R,
    pub(crate) count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Counting<R> {
    pub(crate) fn new(inner: R) -> Self {
        Counting {
            inner,
            count: std::rc::Rc::new(std::cell::Cell::new(0)),
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Turns an I/O error met `offset` bytes into `file` into a data error: an early end is a
/// truncation, undecodable bytes (gzip, tar) are corruption.
pub(crate) fn classify(file: &str, offset: u64, e: std::io::Error, context: &str) -> DataError {
    match e.kind() {
        ErrorKind::UnexpectedEof => DataError::truncated(file, offset, format!("{context}{e}")),
        _ => DataError::corrupt(file, offset, format!("{context}{e}")),
    }
}

/// Reads a stream to its end. `expected` is the size the container announced (a tar header):
/// fewer bytes is a truncation at the offset where they stop.
pub(crate) fn read_all(
    r: &mut dyn Read,
    file: &str,
    expected: Option<u64>,
    context: &dyn Fn() -> String,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(expected.unwrap_or(0).min(1 << 28) as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(file, out.len() as u64, e, &context())),
        }
    }
    if let Some(want) = expected {
        if (out.len() as u64) < want {
            return Err(DataError::truncated(
                file,
                out.len() as u64,
                format!(
                    "{}the archive announces {want} bytes but the data stop after {}",
                    context(),
                    out.len()
                ),
            ));
        }
    }
    Ok(out)
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes. Offsets in
/// errors are in the decompressed bytes; the compressed position is added to the message.
pub(crate) fn read_file_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = [0u8; 2];
    let got = read_up_to(&mut f, &mut head).map_err(|e| DataError::io(path, e))?;
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    if got == 2 && head == GZIP_MAGIC {
        let counting = Counting::new(BufReader::new(f));
        let pos = counting.count.clone();
        let mut dec = MultiGzDecoder::new(counting);
        let ctx = || format!("gzip stream broken near compressed byte {}: ", pos.get());
        read_all(&mut dec, &name, None, &ctx)
    } else {
        let mut f = f;
        read_all(&mut f, &name, None, &String::new)
    }
}

/// Like `read_exact`, but a short read is not an error: returns how many bytes came.
pub(crate) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
