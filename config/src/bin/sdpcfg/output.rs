//! Standard output, flushed line by line so that `watch` output reaches a pipe at once.

use std::io::{self, Write};

/// Where results go; `quiet` is the `-q` option.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `-q`: bare values or keys, no confirmations.
    pub quiet: bool,
}

impl Out {
    /// Print one line (the text may itself contain newlines, as stored values do).
    ///
    /// # Errors
    /// Standard output is closed (e.g. a pipe whose reader exited).
    pub fn line(&self, text: &str) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    }

    /// Print a confirmation such as `OK`, unless quiet.
    ///
    /// # Errors
    /// See [`Out::line`].
    pub fn confirm(&self, text: &str) -> io::Result<()> {
        if self.quiet { Ok(()) } else { self.line(text) }
    }
}
