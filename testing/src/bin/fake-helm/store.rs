//! The stand-in's state directory: the lock, the call record, releases and fault rules.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::args::Cli;
use crate::{Fault, Res};

pub(crate) struct Fake {
    pub(crate) dir: PathBuf,
}

/// Holds `$FAKE_HELM_DIR/.lock` (a directory: creating one is atomic) while alive.
pub(crate) struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

pub(crate) fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Go's `time.Time.String()`, which `helm list` prints.
pub(crate) fn go_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "-".into())
}

pub(crate) fn valid_release_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 53
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

pub(crate) fn write_atomic(path: &Path, text: &str) -> Res<()> {
    let dir = path.parent().ok_or("bad path")?;
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), now_ms()));
    fs::write(&tmp, text).map_err(|e| e.to_string())?;
    fs::rename(&tmp, path).map_err(|e| e.to_string())
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

pub(crate) fn parse_labels(text: &str) -> Res<Map<String, Value>> {
    let mut map = Map::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("invalid argument \"{text}\" for \"-l, --labels\" flag: {pair} must be formatted as key=value"))?;
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}

/// A label selector: `k=v`, `k==v`, `k!=v` (also true without the label), `k` (has
/// the label) and `!k` (has not), comma-separated; the Kubernetes meanings, which helm
/// applies to a release's labels.
pub(crate) fn selector_matches(selector: &str, labels: &Map<String, Value>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some(k) = term.strip_prefix('!').filter(|k| !k.contains('=')) {
                !labels.contains_key(k.trim())
            } else if let Some((k, v)) = term.split_once("!=") {
                labels.get(k).and_then(Value::as_str) != Some(v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels.get(k).and_then(Value::as_str) == Some(v)
            } else {
                labels.contains_key(term)
            }
        })
}

/// The part of helm's `--filter` regular expressions this stand-in understands: an
/// anchored literal (`^name$`) matches exactly, anything else is a substring.
pub(crate) fn filter_matches(filter: &str, name: &str) -> bool {
    let anchored_start = filter.starts_with('^');
    let anchored_end = filter.ends_with('$') && !filter.ends_with("\\$");
    let mut literal = filter.trim_start_matches('^');
    if anchored_end {
        literal = &literal[..literal.len() - 1];
    }
    let literal = literal.replace('\\', "");
    match (anchored_start, anchored_end) {
        (true, true) => name == literal,
        (true, false) => name.starts_with(&literal),
        (false, true) => name.ends_with(&literal),
        (false, false) => name.contains(&literal),
    }
}

pub(crate) fn chart_meta(chart_ref: &str) -> (String, String) {
    let path = Path::new(chart_ref);
    if let Ok(text) = fs::read_to_string(path.join("Chart.yaml")) {
        let field = |key: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(n), Some(v)) = (field("name:"), field("version:")) {
            return (n, v);
        }
    }
    let name = chart_ref.rsplit('/').next().unwrap_or(chart_ref);
    let name = name.split(':').next().unwrap_or(name);
    (name.to_string(), "0.0.0".into())
}

impl Fake {
    pub(crate) fn from_env() -> Res<Fake> {
        let dir = std::env::var_os("FAKE_HELM_DIR")
            .ok_or("FAKE_HELM_DIR is not set (fake-helm keeps its state there)")?;
        let dir = PathBuf::from(dir);
        fs::create_dir_all(dir.join("releases")).map_err(|e| e.to_string())?;
        Ok(Fake { dir })
    }

    pub(crate) fn lock(&self) -> Res<Lock> {
        let path = self.dir.join(".lock");
        let start = std::time::Instant::now();
        loop {
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Lock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A holder killed inside its (short) critical section leaves it behind.
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(10));
                    if stale {
                        let _ = fs::remove_dir(&path);
                    }
                    if start.elapsed() > Duration::from_secs(60) {
                        return Err("fake-helm: lock timeout".into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub(crate) fn record(&self, args: &[String], cli: &Cli) -> Res<()> {
        let mut values = Vec::new();
        let mut modes = Vec::new();
        for file in cli.all("values") {
            values.push(Value::String(fs::read_to_string(file).unwrap_or_default()));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(file)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0);
                modes.push(Value::from(mode));
            }
        }
        // Names only: tests check what a helm child can see, not the values.
        let mut env: Vec<String> = std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        env.sort();
        let line = json!({
            "argv": args,
            "env": env,
            "values": values,
            "values_modes": modes,
            "t": now_ms() as u64,
            "pid": std::process::id(),
        });
        let mut text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
        text.push('\n');
        // One write of the whole line with O_APPEND: lines of concurrent calls never mix.
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("calls.jsonl"))
            .map_err(|e| e.to_string())?;
        file.write_all(text.as_bytes()).map_err(|e| e.to_string())
    }

    pub(crate) fn release_path(&self, ns: &str, name: &str) -> PathBuf {
        self.dir
            .join("releases")
            .join(ns)
            .join(format!("{name}.json"))
    }

    pub(crate) fn load(&self, ns: &str, name: &str) -> Option<Value> {
        read_json(&self.release_path(ns, name))
    }

    pub(crate) fn save(&self, rel: &Value) -> Res<()> {
        let ns = rel["namespace"].as_str().unwrap_or("default");
        let name = rel["name"].as_str().unwrap_or("");
        write_atomic(
            &self.release_path(ns, name),
            &serde_json::to_string_pretty(rel).map_err(|e| e.to_string())?,
        )
    }

    /// The first fault rule matching this call (consuming one of its count).
    pub(crate) fn fault(&self, command: &str, release: &str) -> Res<Option<Fault>> {
        if std::env::var("FAKE_HELM_HANG").is_ok_and(|v| v == "1") {
            return Ok(Some(Fault::Hang));
        }
        if let Some(fault) = self.counted_file_fault()? {
            return Ok(Some(fault));
        }
        let path = self.dir.join("faults.json");
        if !path.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let Some(Value::Array(mut rules)) = read_json(&path) else {
            return Ok(None);
        };
        let mut found = None;
        for rule in &mut rules {
            let cmd_ok = rule["command"].as_str().is_none_or(|c| c == command);
            let rel_ok = rule["release"].as_str().is_none_or(|r| r == release);
            let count = rule["count"].as_u64();
            if !cmd_ok || !rel_ok || count == Some(0) {
                continue;
            }
            if let Some(n) = count {
                rule["count"] = Value::from(n - 1);
            }
            let message = rule["message"]
                .as_str()
                .unwrap_or("fake failure")
                .to_string();
            found = match rule["kind"].as_str() {
                Some("fail") => Some(Fault::Fail(message)),
                Some("hang") => Some(Fault::Hang),
                Some("pending") => Some(Fault::Pending(message)),
                Some("delay") => Some(Fault::Delay(Duration::from_millis(
                    rule["ms"].as_u64().unwrap_or(0),
                ))),
                _ => None,
            };
            if found.is_some() {
                break;
            }
        }
        write_atomic(
            &path,
            &serde_json::to_string(&rules).map_err(|e| e.to_string())?,
        )?;
        Ok(found)
    }

    /// The simple forms: a file `fail`, `hang` or `pending` in the state directory holding
    /// `N message` applies to the next N mutating calls (whatever the release).
    fn counted_file_fault(&self) -> Res<Option<Fault>> {
        for kind in ["fail", "hang", "pending"] {
            let path = self.dir.join(kind);
            if !path.exists() {
                continue;
            }
            let _lock = self.lock()?;
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let (count, message) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            if count == 0 {
                continue;
            }
            write_atomic(&path, &format!("{} {message}", count - 1))?;
            let message = if message.is_empty() {
                "fake failure".to_string()
            } else {
                message.to_string()
            };
            return Ok(Some(match kind {
                "fail" => Fault::Fail(message),
                "hang" => Fault::Hang,
                _ => Fault::Pending(message),
            }));
        }
        Ok(None)
    }

    pub(crate) fn base_delay() -> Duration {
        std::env::var("FAKE_HELM_DELAY_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis)
    }

    /// Runs between "release marked pending" and "release finished": the time a real
    /// helm spends talking to the cluster. Returns an error to leave the release pending.
    pub(crate) fn work(fault: Option<Fault>) -> Res<()> {
        match fault {
            Some(Fault::Hang) => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Some(Fault::Pending(message)) => Err(message),
            Some(Fault::Delay(d)) => {
                std::thread::sleep(d + Self::base_delay());
                Ok(())
            }
            Some(Fault::Fail(_)) | None => {
                std::thread::sleep(Self::base_delay());
                Ok(())
            }
        }
    }

    pub(crate) fn check_chart(&self, chart: &str) -> Res<()> {
        if chart.starts_with("oci://") {
            return Ok(());
        }
        if chart.starts_with('/') || chart.starts_with('.') {
            if Path::new(chart).join("Chart.yaml").is_file() {
                return Ok(());
            }
            return Err(format!("path \"{chart}\" not found"));
        }
        if let Some((repo, _)) = chart.split_once('/') {
            let repos = read_json(&self.dir.join("repos.json")).unwrap_or(json!({}));
            if repos.get(repo).is_some() {
                return Ok(());
            }
            return Err(format!("repo {repo} not found"));
        }
        Err(format!(
            "non-absolute URLs should be in form of repo_name/path_to_chart, got: {chart}"
        ))
    }
}

pub(crate) fn push_history(
    rel: &mut Value,
    revision: u64,
    status: &str,
    description: &str,
    updated: &str,
) {
    let entry = json!({
        "revision": revision, "status": status, "description": description, "updated": updated,
        "chart": rel["chart"], "values": rel["values"],
    });
    match rel["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => rel["history"] = json!([entry]),
    }
}

/// The shape of `helm status -o json` / `helm upgrade -o json` (the fields that matter).
pub(crate) fn release_json(rel: &Value) -> Value {
    let (name, version) = rel["chart"]
        .as_str()
        .and_then(|c| c.rsplit_once('-'))
        .map_or(("", ""), |(n, v)| (n, v));
    json!({
        "name": rel["name"],
        "namespace": rel["namespace"],
        "version": rel["revision"],
        "info": {
            "status": rel["status"],
            "description": rel["description"],
            "last_deployed": rel["updated"],
        },
        "chart": {"metadata": {"name": name, "version": version}},
        "config": rel["values"],
        "labels": rel["labels"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_have_the_kubernetes_meanings() {
        let labels = parse_labels("a=1,b=2").unwrap_or_default();
        for (selector, expected) in [
            ("a=1", true),
            ("a==1,b=2", true),
            ("a=2", false),
            ("a!=2", true),
            ("c!=2", true),
            ("a", true),
            ("c", false),
            ("!c", true),
            ("!a", false),
            ("a=1,!c", true),
            ("a=1,!b", false),
        ] {
            assert_eq!(selector_matches(selector, &labels), expected, "{selector}");
        }
    }
}
