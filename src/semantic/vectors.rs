//! Vectors of texts in a file, tagged with the identity of the embedder that made them: the
//! index keeps its passages' vectors this way (`tutor-vectors.bin` in a version folder,
//! checksummed with the rest), keyed by a digest of the text embedded, so a refresh embeds only
//! passages whose text is new, whichever lesson they moved to.
//!
//! Layout, little-endian: `TUTORVEC1\n`, the identity's length (u32) and bytes, the dimensions
//! (u32), the count (u64), then per text its 16-byte key and its numbers (f32 each).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"TUTORVEC1\n";

/// A text's key in the file: the first 16 bytes of its BLAKE3 digest.
pub type TextKey = [u8; 16];

/// The key of `text`.
pub fn text_key(text: &str) -> TextKey {
    let mut key = [0u8; 16];
    key.copy_from_slice(&blake3::hash(text.as_bytes()).as_bytes()[..16]);
    key
}

/// Vectors by text key, all from one embedder.
#[derive(Debug, Clone, Default)]
pub struct VectorFile {
    pub identity: String,
    pub dimensions: usize,
    pub vectors: HashMap<TextKey, Box<[f32]>>,
}

impl VectorFile {
    /// Writes the file (keys in order, so the same vectors give the same bytes).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(MAGIC)?;
        let identity = self.identity.as_bytes();
        out.write_all(
            &u32::try_from(identity.len())
                .map_err(io::Error::other)?
                .to_le_bytes(),
        )?;
        out.write_all(identity)?;
        out.write_all(
            &u32::try_from(self.dimensions)
                .map_err(io::Error::other)?
                .to_le_bytes(),
        )?;
        out.write_all(&(self.vectors.len() as u64).to_le_bytes())?;
        let mut keys: Vec<&TextKey> = self.vectors.keys().collect();
        keys.sort_unstable();
        for key in keys {
            out.write_all(key)?;
            for x in self.vectors[key].iter() {
                out.write_all(&x.to_le_bytes())?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Reads a file written by [`VectorFile::write`]; anything else is an error, never a guess.
    pub fn read(path: &Path) -> io::Result<VectorFile> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let bytes = std::fs::read(path)?;
        let mut input: &[u8] = &bytes;
        if take::<10>(&mut input)? != *MAGIC {
            return Err(bad("not a vector file"));
        }
        let length = u32::from_le_bytes(take(&mut input)?) as usize;
        let (identity, rest) = input
            .split_at_checked(length)
            .ok_or_else(|| bad("the identity is cut short"))?;
        let identity = String::from_utf8(identity.to_vec()).map_err(|_| bad("identity"))?;
        input = rest;
        let dimensions = u32::from_le_bytes(take(&mut input)?) as usize;
        let count = u64::from_le_bytes(take(&mut input)?) as usize;
        let record = 16 + dimensions * 4;
        if dimensions == 0 || input.len() != count.saturating_mul(record) {
            return Err(bad("the vectors do not fill the file exactly"));
        }
        let mut vectors = HashMap::with_capacity(count);
        for chunk in input.chunks_exact(record) {
            let (key, numbers) = chunk.split_at(16);
            let mut k = [0u8; 16];
            k.copy_from_slice(key);
            let v: Box<[f32]> = numbers
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            vectors.insert(k, v);
        }
        Ok(VectorFile {
            identity,
            dimensions,
            vectors,
        })
    }
}

/// The next `N` bytes of `input`.
fn take<const N: usize>(input: &mut &[u8]) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_file_reads_back_what_was_written_and_refuses_a_cut_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v.bin");
        let mut file = VectorFile {
            identity: "local:test@0123".to_string(),
            dimensions: 3,
            vectors: HashMap::new(),
        };
        file.vectors
            .insert(text_key("one"), vec![1.0, 0.0, -0.5].into());
        file.vectors
            .insert(text_key("two"), vec![0.25, 0.5, 0.75].into());
        file.write(&path).expect("writes");
        let back = VectorFile::read(&path).expect("reads");
        assert_eq!(back.identity, file.identity);
        assert_eq!(back.dimensions, 3);
        assert_eq!(back.vectors, file.vectors);
        let bytes = std::fs::read(&path).expect("bytes");
        std::fs::write(&path, &bytes[..bytes.len() - 2]).expect("cut");
        assert!(VectorFile::read(&path).is_err(), "a cut file is refused");
        std::fs::write(&path, b"something else").expect("other");
        assert!(VectorFile::read(&path).is_err());
    }
}
