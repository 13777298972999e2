//! What a gate's scanner hands `gate run` besides code texts: the name of a PNG image in the
//! configured spool directory (`[scanner] spool`), and [`printable`] for echoing any of it.
//!
//! What it must never do: open a path outside the spool, open anything but a regular file
//! (a FIFO or a device would block or never end), read without a bound on size and time, or
//! print what came from input with its control characters (terminal escape sequences).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use menjin_render::qrimage::{self, FILE_LEN_MAX};

/// Reading and decoding one image: a 16-megapixel PNG decodes in about a second on a gate's
/// small CPU; longer means a stuck file system, and the guard gets an answer instead.
const IMAGE_READ_MS_MAX: u64 = 5_000;

/// `s` with every control character (C0, DEL, C1) and bidirectional override replaced by
/// `?`: what is echoed to the guard's terminal cannot move the cursor, clear the screen,
/// retitle the window or reorder the text.
pub fn printable(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if bad(c) { '?' } else { c }).collect())
}

/// The spool directory, canonical: every image a scan names must resolve inside it.
#[derive(Clone, Debug)]
pub struct Spool {
    /// As configured: a full path typed by the scanner may spell it this way.
    configured: PathBuf,
    root: PathBuf,
}

impl Spool {
    /// The configured spool, which must exist and be a directory when the gate starts.
    pub fn open(dir: &Path) -> Result<Spool, String> {
        let root = std::fs::canonicalize(dir)
            .map_err(|e| format!("[scanner] spool {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!(
                "[scanner] spool {} is not a directory",
                dir.display()
            ));
        }
        Ok(Spool {
            configured: dir.to_path_buf(),
            root,
        })
    }

    /// The code text in the image `name` (a file name in the spool, or a full path into it),
    /// read and decoded on a blocking thread within [`IMAGE_READ_MS_MAX`].
    pub async fn read_code(&self, name: &str) -> Result<String, String> {
        let spool = self.clone();
        let owned = name.to_string();
        let work = tokio::task::spawn_blocking(move || spool.decode(&owned));
        let limit = Duration::from_millis(IMAGE_READ_MS_MAX);
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("reading image {}: {e}", printable(name))),
            Err(_) => Err(format!(
                "image {} not read within {} s: scan again",
                printable(name),
                IMAGE_READ_MS_MAX / 1000
            )),
        }
    }

    fn decode(&self, name: &str) -> Result<String, String> {
        let path = self.resolve(name)?;
        qrimage::decode_file(&path).map_err(|e| printable(&e.to_string()).into_owned())
    }

    /// The canonical path of `name` if it is a regular file inside the spool, not too large.
    fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        let shown = printable(name);
        let outside = || {
            format!(
                "image {shown} is outside the spool {}: only images there are read",
                self.root.display()
            )
        };
        let given = Path::new(name);
        // A full path elsewhere (/proc/self/fd/0, /dev/...) is not even looked at.
        let into_spool = given.starts_with(&self.root) || given.starts_with(&self.configured);
        if given.is_absolute() && !into_spool {
            return Err(outside());
        }
        let path = std::fs::canonicalize(self.root.join(given))
            .map_err(|e| format!("image {shown} not in the spool: {e}"))?;
        if !path.starts_with(&self.root) {
            return Err(outside());
        }
        // Canonical, so no symbolic link is left to follow: a FIFO or device is refused
        // here, before anything opens it.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("image {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("image {shown} is not a regular file"));
        }
        if meta.len() > FILE_LEN_MAX {
            return Err(format!(
                "image {shown} is {} bytes, more than {FILE_LEN_MAX}",
                meta.len()
            ));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_replaced() {
        assert_eq!(printable("36.6 MJ:ABC 王芳"), "36.6 MJ:ABC 王芳");
        assert_eq!(printable("\x1b[2Jx\x07\u{9b}\u{202e}y\n"), "?[2Jx???y?");
    }

    #[test]
    fn only_regular_files_inside_the_spool_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        std::fs::write(tmp.path().join("out.png"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let spool = Spool::open(&dir).unwrap();
        assert!(spool.resolve("a.png").is_ok());
        assert!(
            spool
                .resolve(&dir.join("a.png").display().to_string())
                .is_ok()
        );
        for name in [
            "../out.png",
            "/etc/passwd",
            "/proc/self/fd/0",
            "sub/../../out.png",
        ] {
            let why = spool.resolve(name).unwrap_err();
            assert!(why.contains("outside the spool"), "{name}: {why}");
        }
        assert!(
            spool
                .resolve("sub")
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            spool
                .resolve("missing.png")
                .unwrap_err()
                .contains("missing.png")
        );
    }
}
