//! `edit <path>`: a JSON value is edited as YAML in `$EDITOR` and stored back as JSON
//! formatted like the Python tools; any other value is edited as plain text.
//!
//! The editor runs outside any transaction (a person may take minutes). The value is
//! written back only if the key is unchanged since it was read; otherwise nothing is
//! written and the edited file is kept so the work is not lost.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sdp_config::Config;
use serde_json::Value;
use tempfile::NamedTempFile;

use crate::output::Out;

/// Editor used when `$EDITOR` is unset or blank.
const DEFAULT_EDITOR: &str = "vi";

/// How the value is presented in the editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// JSON shown as YAML.
    Yaml,
    /// Anything else, as stored.
    Text,
}

/// Edit one key. Prints `No change!` if the text is unchanged, then `OK`.
///
/// # Errors
/// A missing key, an editor that cannot be run or fails, edited text that is not
/// valid YAML, or a key changed or deleted by someone else meanwhile.
pub async fn edit(db: &Config, path: &str, out: Out) -> Result<()> {
    let p = path.to_string();
    let current = db
        .transact(move |txn| {
            let p = p.clone();
            Box::pin(async move { txn.get_with_revision(&p).await })
        })
        .await?;
    let Some((old, revision)) = current else {
        bail!("{path} does not exist")
    };

    let (form, shown) = match serde_json::from_str::<Value>(&old) {
        Ok(value) => (
            Form::Yaml,
            serde_yaml::to_string(&value).context("cannot show the value as YAML")?,
        ),
        Err(_) => (Form::Text, format!("{old}\n")),
    };
    let file = write_temp(path, form, &shown)?;
    let _ignore_interrupts = ignore_interrupts()?;
    run_editor(
        &editor_command(std::env::var("EDITOR").ok().as_deref()),
        file.path(),
    )
    .await?;
    let edited = std::fs::read_to_string(file.path())
        .with_context(|| format!("cannot read the edited file {}", file.path().display()))?;

    let new = match form {
        Form::Yaml => match parse_yaml(&edited) {
            Ok(value) => sdp_config::json::to_python_string(&value),
            Err(e) => {
                let kept = keep(file)?;
                bail!(
                    "{e:#}; {path} not changed, your edit is in {}",
                    kept.display()
                );
            }
        },
        Form::Text => edited
            .strip_suffix('\n')
            .map_or(edited.clone(), str::to_string),
    };
    if new == old {
        out.line("No change!")?;
        return Ok(out.confirm("OK")?);
    }

    let (p, value) = (path.to_string(), new);
    let written = db
        .transact(move |txn| {
            let (p, value) = (p.clone(), value.clone());
            Box::pin(async move {
                match txn.get_with_revision(&p).await? {
                    Some((_, now)) if now == revision => {
                        txn.update(&p, &value).await?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
        })
        .await?;
    if !written {
        let kept = keep(file)?;
        bail!(
            "{path} was changed or deleted by someone else while you edited it; not changed, your edit is in {}",
            kept.display()
        );
    }
    Ok(out.confirm("OK")?)
}

/// Parse the edited YAML; an empty document is refused rather than stored as `null`.
fn parse_yaml(text: &str) -> Result<Value> {
    let value: Value = serde_yaml::from_str(text).context("the edited text is not valid YAML")?;
    if value.is_null() && text.trim().is_empty() {
        bail!("the edited text is empty");
    }
    Ok(value)
}

/// A private (mode 0600) temporary file named after the key, holding `text`.
fn write_temp(path: &str, form: Form, text: &str) -> Result<NamedTempFile> {
    let base = path
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or("sdpcfg");
    let suffix = match form {
        Form::Yaml => ".yml",
        Form::Text => ".dat",
    };
    let file = tempfile::Builder::new()
        .prefix(&format!("{base}-"))
        .suffix(suffix)
        .tempfile()
        .context("cannot create a temporary file to edit")?;
    std::fs::write(file.path(), text)
        .with_context(|| format!("cannot write the temporary file {}", file.path().display()))?;
    Ok(file)
}

fn keep(file: NamedTempFile) -> Result<PathBuf> {
    let (_, path) = file.keep().context("cannot keep the edited file")?;
    Ok(path)
}

/// `$EDITOR` split on whitespace into program and arguments (no shell, no quoting).
fn editor_command(editor: Option<&str>) -> Vec<String> {
    let words: Vec<String> = editor
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.is_empty() {
        vec![DEFAULT_EDITOR.to_string()]
    } else {
        words
    }
}

async fn run_editor(command: &[String], file: &Path) -> Result<()> {
    let Some((program, args)) = command.split_first() else {
        bail!("no editor given")
    };
    let status = tokio::process::Command::new(program)
        .args(args)
        .arg(file)
        .status()
        .await
        .with_context(|| format!("cannot run the editor {program:?} (set EDITOR)"))?;
    if !status.success() {
        bail!("the editor {program:?} failed ({status}); nothing changed");
    }
    Ok(())
}

/// While the editor runs, Ctrl-C belongs to it: keep SIGINT from killing sdpcfg (the
/// editor, a new program image, gets the default handling back).
fn ignore_interrupts() -> Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(signal(SignalKind::interrupt())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_is_split_on_whitespace_without_a_shell() {
        assert_eq!(editor_command(None), ["vi"]);
        assert_eq!(editor_command(Some("  ")), ["vi"]);
        assert_eq!(editor_command(Some("code --wait")), ["code", "--wait"]);
        assert_eq!(
            editor_command(Some("nano; rm -rf x")),
            ["nano;", "rm", "-rf", "x"]
        );
    }

    #[test]
    fn empty_or_broken_yaml_is_refused() {
        assert!(parse_yaml("").is_err());
        assert!(parse_yaml("a: [").is_err());
        assert_eq!(parse_yaml("null").unwrap(), Value::Null);
        assert_eq!(parse_yaml("a: 1").unwrap()["a"], 1);
    }
}
