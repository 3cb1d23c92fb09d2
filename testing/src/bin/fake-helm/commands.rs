//! The helm commands the stand-in implements.

use std::fs;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::args::Cli;
use crate::store::{
    Fake, chart_meta, filter_matches, go_time, parse_labels, push_history, read_json, release_json,
    rfc3339_now, selector_matches, valid_release_name, write_atomic,
};
use crate::{Fault, PENDING, Res};

impl Fake {
    pub(crate) fn upgrade(&self, cli: &Cli, install: bool) -> Res<String> {
        let [name, chart] = cli.positional.as_slice() else {
            return Err("\"helm upgrade\" requires 2 arguments\n\nUsage:  helm upgrade [RELEASE] [CHART] [flags]".to_string());
        };
        if !valid_release_name(name) {
            return Err("invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53".into());
        }
        let ns = cli.namespace();
        let mut values = Map::new();
        for file in cli.all("values") {
            let text = fs::read_to_string(file).map_err(|e| format!("open {file}: {e}"))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => values.extend(m),
                Ok(_) | Err(_) => {
                    values.insert("__unparsed__".into(), Value::String(text));
                }
            }
        }
        let labels = match cli.get("labels") {
            Some(l) => parse_labels(l)?,
            None => Map::new(),
        };
        self.check_chart(chart)?;
        let fault = self.fault("upgrade", name)?;
        if let Some(Fault::Fail(message)) = &fault {
            return Err(message.clone());
        }
        let (chart_name, chart_version) = chart_meta(chart);
        let description = cli.get("description").unwrap_or("").to_string();
        let revision;
        {
            let _lock = self.lock()?;
            let existing = self.load(&ns, name);
            let live = existing
                .as_ref()
                .filter(|r| r["status"].as_str() != Some("uninstalled"));
            if let Some(rel) = live {
                let status = rel["status"].as_str().unwrap_or("");
                if PENDING.contains(&status) {
                    return Err("UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress".into());
                }
            } else if !install {
                return Err(format!(
                    "UPGRADE FAILED: \"{name}\" has no deployed releases"
                ));
            }
            let mut rel = live.cloned().unwrap_or_else(|| {
                json!({"name": name, "namespace": ns, "revision": 0, "labels": {}, "history": [],
                       "installs": existing.as_ref().map_or(0, |e| e["installs"].as_u64().unwrap_or(0))})
            });
            let fresh = live.is_none();
            revision = rel["revision"].as_u64().unwrap_or(0) + 1;
            let status = if fresh {
                "pending-install"
            } else {
                "pending-upgrade"
            };
            if fresh {
                rel["installs"] = Value::from(rel["installs"].as_u64().unwrap_or(0) + 1);
            }
            let mut all_labels = rel["labels"].as_object().cloned().unwrap_or_default();
            all_labels.extend(labels);
            rel["labels"] = Value::Object(all_labels);
            let updated = rfc3339_now();
            rel["revision"] = Value::from(revision);
            rel["status"] = Value::from(status);
            rel["chart"] = Value::from(format!("{chart_name}-{chart_version}"));
            rel["chart_ref"] = Value::from(chart.as_str());
            rel["values"] = Value::Object(values.clone());
            rel["description"] = Value::from(description.clone());
            rel["updated"] = Value::from(updated.clone());
            push_history(&mut rel, revision, status, &description, &updated);
            self.save(&rel)?;
        }
        Self::work(fault)?;
        let rel = self.finish(&ns, name, revision, &description)?;
        Ok(if cli.get("output") == Some("json") {
            format!("{}\n", release_json(&rel))
        } else {
            format!(
                "Release \"{name}\" has been upgraded. Happy Helming!\nNAME: {name}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {revision}\n"
            )
        })
    }

    /// Marks `revision` deployed and every earlier deployed revision superseded.
    pub(crate) fn finish(
        &self,
        ns: &str,
        name: &str,
        revision: u64,
        description: &str,
    ) -> Res<Value> {
        let _lock = self.lock()?;
        let mut rel = self
            .load(ns, name)
            .ok_or("release vanished while operating on it")?;
        if rel["revision"].as_u64() != Some(revision) {
            return Err("release changed while operating on it".into());
        }
        let updated = rfc3339_now();
        rel["status"] = Value::from("deployed");
        rel["updated"] = Value::from(updated.clone());
        if let Some(history) = rel["history"].as_array_mut() {
            for h in history.iter_mut() {
                if h["revision"].as_u64() == Some(revision) {
                    h["status"] = Value::from("deployed");
                    h["updated"] = Value::from(updated.clone());
                    if !description.is_empty() {
                        h["description"] = Value::from(description);
                    }
                } else if h["status"].as_str() == Some("deployed") {
                    h["status"] = Value::from("superseded");
                }
            }
        }
        self.save(&rel)?;
        Ok(rel)
    }

    pub(crate) fn uninstall(&self, cli: &Cli) -> Res<String> {
        if cli.positional.is_empty() {
            return Err("\"helm uninstall\" requires at least 1 argument".into());
        }
        let ns = cli.namespace();
        let mut out = String::new();
        for name in &cli.positional {
            let fault = self.fault("uninstall", name)?;
            if let Some(Fault::Fail(message)) = &fault {
                return Err(message.clone());
            }
            {
                let _lock = self.lock()?;
                let Some(mut rel) = self.load(&ns, name) else {
                    if cli.has("ignore-not-found") {
                        out.push_str(&format!("release \"{name}\" not found\n"));
                        continue;
                    }
                    return Err(format!(
                        "uninstall: Release not loaded: {name}: release: not found"
                    ));
                };
                rel["status"] = Value::from("uninstalling");
                self.save(&rel)?;
            }
            Self::work(fault)?;
            let _lock = self.lock()?;
            let _ = fs::remove_file(self.release_path(&ns, name));
            out.push_str(&format!("release \"{name}\" uninstalled\n"));
        }
        Ok(out)
    }

    pub(crate) fn releases(&self, ns: Option<&str>) -> Vec<Value> {
        let root = self.dir.join("releases");
        let dirs: Vec<PathBuf> = match ns {
            Some(ns) => vec![root.join(ns)],
            None => fs::read_dir(&root)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "json")
                    && let Some(rel) = read_json(&path)
                {
                    out.push(rel);
                }
            }
        }
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        out
    }

    pub(crate) fn list(&self, cli: &Cli) -> Res<String> {
        let ns = cli.namespace();
        let ns = if cli.has("all-namespaces") {
            None
        } else {
            Some(ns.as_str())
        };
        let max: usize = cli
            .get("max")
            .map_or(Ok(256), str::parse)
            .map_err(|e| format!("invalid --max: {e}"))?;
        let offset: usize = cli
            .get("offset")
            .map_or(Ok(0), str::parse)
            .map_err(|e| format!("invalid --offset: {e}"))?;
        let empty = Map::new();
        // An exact name (`--filter ^name$`) reads one file, not the whole store.
        let exact = cli
            .get("filter")
            .and_then(|f| f.strip_prefix('^')?.strip_suffix('$'))
            .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let candidates = match (exact, ns) {
            (Some(name), Some(ns)) => self.load(ns, name).into_iter().collect(),
            _ => self.releases(ns),
        };
        let matching: Vec<Value> = candidates
            .into_iter()
            .filter(|r| {
                let labels = r["labels"].as_object().unwrap_or(&empty);
                let name = r["name"].as_str().unwrap_or("");
                cli.get("selector")
                    .is_none_or(|s| selector_matches(s, labels))
                    && cli.get("filter").is_none_or(|f| filter_matches(f, name))
            })
            .skip(offset)
            .take(if max == 0 { usize::MAX } else { max })
            .collect();
        if cli.has("short") {
            return Ok(matching
                .iter()
                .map(|r| format!("{}\n", r["name"].as_str().unwrap_or("")))
                .collect());
        }
        let elements: Vec<Value> = matching
            .iter()
            .map(|r| {
                json!({
                    "name": r["name"], "namespace": r["namespace"],
                    "revision": r["revision"].as_u64().unwrap_or(0).to_string(),
                    "updated": go_time(r["updated"].as_str().unwrap_or("")),
                    "status": r["status"], "chart": r["chart"], "app_version": "",
                })
            })
            .collect();
        if cli.get("output") == Some("json") {
            Ok(format!("{}\n", Value::Array(elements)))
        } else {
            let mut out =
                String::from("NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\n");
            for e in elements {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t\n",
                    e["name"].as_str().unwrap_or(""),
                    e["namespace"].as_str().unwrap_or(""),
                    e["revision"].as_str().unwrap_or(""),
                    e["updated"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    e["chart"].as_str().unwrap_or("")
                ));
            }
            Ok(out)
        }
    }

    pub(crate) fn history(&self, cli: &Cli) -> Res<String> {
        let [name] = cli.positional.as_slice() else {
            return Err("\"helm history\" requires 1 argument".into());
        };
        let rel = self
            .load(&cli.namespace(), name)
            .ok_or("release: not found")?;
        let history: Vec<Value> = rel["history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                json!({"revision": h["revision"], "updated": h["updated"], "status": h["status"],
                       "chart": h["chart"], "app_version": "", "description": h["description"]})
            })
            .collect();
        if cli.get("output") == Some("json") {
            Ok(format!("{}\n", Value::Array(history)))
        } else {
            Ok(history
                .iter()
                .map(|h| format!("{}\t{}\t{}\n", h["revision"], h["status"], h["description"]))
                .collect())
        }
    }

    pub(crate) fn rollback(&self, cli: &Cli) -> Res<String> {
        let (name, target) = match cli.positional.as_slice() {
            [name] => (name, None),
            [name, rev] => (
                name,
                Some(
                    rev.parse::<u64>()
                        .map_err(|e| format!("invalid revision {rev}: {e}"))?,
                ),
            ),
            _ => return Err("\"helm rollback\" requires 1 or 2 arguments".into()),
        };
        let ns = cli.namespace();
        let fault = self.fault("rollback", name)?;
        if let Some(Fault::Fail(message)) = &fault {
            return Err(message.clone());
        }
        let revision;
        let description;
        {
            let _lock = self.lock()?;
            let mut rel = self.load(&ns, name).ok_or("release: not found")?;
            let current = rel["revision"].as_u64().unwrap_or(0);
            let target = target
                .filter(|t| *t > 0)
                .unwrap_or(current.saturating_sub(1));
            let history = rel["history"].as_array().cloned().unwrap_or_default();
            let old = history
                .iter()
                .find(|h| h["revision"].as_u64() == Some(target))
                .ok_or_else(|| format!("release has no {target} version"))?;
            revision = current + 1;
            description = format!("Rollback to {target}");
            let updated = rfc3339_now();
            rel["values"] = old["values"].clone();
            rel["chart"] = old["chart"].clone();
            rel["revision"] = Value::from(revision);
            rel["status"] = Value::from("pending-rollback");
            rel["description"] = Value::from(description.clone());
            rel["updated"] = Value::from(updated.clone());
            push_history(
                &mut rel,
                revision,
                "pending-rollback",
                &description,
                &updated,
            );
            self.save(&rel)?;
        }
        Self::work(fault)?;
        self.finish(&ns, name, revision, &description)?;
        Ok("Rollback was a success! Happy Helming!\n".into())
    }

    pub(crate) fn status(&self, cli: &Cli) -> Res<String> {
        let [name] = cli.positional.as_slice() else {
            return Err("\"helm status\" requires 1 argument".into());
        };
        let rel = self
            .load(&cli.namespace(), name)
            .ok_or("release: not found")?;
        Ok(format!("{}\n", release_json(&rel)))
    }

    pub(crate) fn template(&self, args: &[String], cli: &Cli) -> Res<String> {
        if let Some(real) = std::env::var_os("FAKE_HELM_REAL") {
            let status = std::process::Command::new(real)
                .args(args)
                .status()
                .map_err(|e| format!("cannot run the real helm: {e}"))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        let name = cli
            .positional
            .first()
            .map_or("release-name", String::as_str);
        Ok(format!(
            "---\n# Source: stub/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{}}\n"
        ))
    }

    pub(crate) fn repo(&self, cli: &Cli) -> Res<String> {
        let path = self.dir.join("repos.json");
        let _lock = self.lock()?;
        let mut repos = read_json(&path).unwrap_or(json!({}));
        match cli.positional.as_slice() {
            [add, name, url] if add == "add" => {
                if let Some(old) = repos.get(name)
                    && old.as_str() != Some(url)
                    && !cli.has("force-update")
                {
                    return Err(format!(
                        "repository name ({name}) already exists, please specify a different name"
                    ));
                }
                repos[name] = Value::from(url.as_str());
                write_atomic(&path, &repos.to_string())?;
                Ok(format!("\"{name}\" has been added to your repositories\n"))
            }
            [update, names @ ..] if update == "update" => {
                let map = repos.as_object().cloned().unwrap_or_default();
                if map.is_empty() {
                    return Err("no repositories found. You must add one before updating".into());
                }
                let mut out = String::from(
                    "Hang tight while we grab the latest from your chart repositories...\n",
                );
                for name in map.keys().filter(|n| names.is_empty() || names.contains(n)) {
                    out.push_str(&format!(
                        "...Successfully got an update from the \"{name}\" chart repository\n"
                    ));
                }
                out.push_str("Update Complete. ⎈Happy Helming!⎈\n");
                Ok(out)
            }
            [list] if list == "list" => Ok(format!("{repos}\n")),
            _ => Err("unknown repo command (fake-helm knows add, update, list)".into()),
        }
    }
}
