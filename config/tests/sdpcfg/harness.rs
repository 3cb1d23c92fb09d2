//! Running the real `sdpcfg` binary against a real etcd, and reading or seeding that
//! etcd through the library (independently of the tool under test).

use std::io::Write;
use std::process::{Command, Stdio};

use sdp_config::{Config, ConnectionSettings};
use sdp_testing::EtcdServer;

/// What one run of `sdpcfg` printed and returned.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Success with exactly this standard output and nothing on standard error.
pub fn ok(stdout: &str) -> Outcome {
    Outcome {
        stdout: stdout.into(),
        stderr: String::new(),
        code: 0,
    }
}

/// Failure (exit status 1) with exactly this standard error and no standard output.
pub fn fails(stderr: &str) -> Outcome {
    Outcome {
        stdout: String::new(),
        stderr: stderr.into(),
        code: 1,
    }
}

/// An `sdpcfg` invocation being built.
pub struct Sdpcfg {
    cmd: Command,
    stdin: Option<String>,
}

/// `sdpcfg <args>` pointed at `etcd` through `SDP_CONFIG_*` alone: the environment is
/// otherwise empty (but for `TZ`, so the tool's "today" is the test's).
pub fn sdpcfg(etcd: &EtcdServer, args: &[&str]) -> Sdpcfg {
    sdpcfg_with_env(etcd.env(), args)
}

/// `sdpcfg <args>` with exactly these environment variables (plus `TZ`).
pub fn sdpcfg_with_env(env: Vec<(String, String)>, args: &[&str]) -> Sdpcfg {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdpcfg"));
    cmd.env_clear().envs(env).args(args);
    if let Ok(tz) = std::env::var("TZ") {
        cmd.env("TZ", tz);
    }
    Sdpcfg { cmd, stdin: None }
}

impl Sdpcfg {
    /// Feed this text on standard input.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// The underlying command, for spawning long-running forms (`watch`).
    pub fn into_command(self) -> Command {
        self.cmd
    }

    /// Run to completion.
    pub fn run(mut self) -> Outcome {
        self.cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::piped());
        let mut child = self.cmd.spawn().expect("sdpcfg runs");
        let mut stdin = child.stdin.take().expect("stdin piped");
        if let Some(text) = self.stdin.take() {
            stdin.write_all(text.as_bytes()).expect("stdin written");
        }
        drop(stdin);
        let output = child.wait_with_output().expect("sdpcfg finishes");
        Outcome {
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
            code: output.status.code().unwrap_or(-1),
        }
    }
}

/// Direct access to the same etcd through the library, for seeding and checking.
pub struct Db {
    runtime: tokio::runtime::Runtime,
    db: Config,
}

impl Db {
    /// Connect to a plain (no TLS, no auth) test server.
    pub fn new(etcd: &EtcdServer) -> Db {
        Db::with_settings(etcd.connection())
    }

    /// Connect with the given settings.
    pub fn with_settings(settings: ConnectionSettings) -> Db {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = runtime
            .block_on(Config::connect(&settings))
            .expect("library connects");
        Db { runtime, db }
    }

    /// Write keys as they are (any previous value replaced).
    pub fn put(&self, entries: &[(&str, &str)]) {
        let entries: Vec<(String, String)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for chunk in entries.chunks(100) {
            let chunk = chunk.to_vec();
            self.runtime
                .block_on(self.db.transact(move |txn| {
                    let chunk = chunk.clone();
                    Box::pin(async move {
                        for (k, v) in &chunk {
                            txn.put(k, v)?;
                        }
                        Ok(())
                    })
                }))
                .expect("seeded");
        }
    }

    /// The raw value of a key.
    pub fn get(&self, path: &str) -> Option<String> {
        let path = path.to_string();
        self.runtime
            .block_on(self.db.transact(move |txn| {
                let path = path.clone();
                Box::pin(async move { txn.get(&path).await })
            }))
            .expect("read")
    }

    /// The database's identity record, created first (as the deployer does) when
    /// `create`.
    pub fn identity(&self, create: bool) -> Option<sdp_config::DatabaseRecord> {
        if create {
            return Some(
                self.runtime
                    .block_on(self.db.database_record_or_create(false))
                    .expect("identity created"),
            );
        }
        self.runtime
            .block_on(self.db.database_record())
            .expect("identity read")
            .map(|(record, _)| record)
    }

    /// Every key starting with `prefix`, down to 16 levels.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.to_string();
        self.runtime
            .block_on(self.db.transact(move |txn| {
                let prefix = prefix.clone();
                Box::pin(async move { txn.list_keys(&prefix, 16).await })
            }))
            .expect("listed")
    }
}

/// Today's date as `process` uses it in IDs (local time).
pub fn today() -> String {
    chrono::Local::now().format("%Y%m%d").to_string()
}

/// A processing block exactly as the Python `sdpcfg process` writes it (`parameters`
/// is the already formatted JSON of the parameters at indent level 1).
pub fn python_pb(id: &str, kind: &str, workflow: &str, version: &str, parameters: &str) -> String {
    format!(
        "{{\n  \"parameters\": {parameters},\n  \"pb_id\": \"{id}\",\n  \"sbi_id\": null,\n  \"scan_parameters\": {{}},\n  \"workflow\": {{\n    \"id\": \"{workflow}\",\n    \"type\": \"{kind}\",\n    \"version\": \"{version}\"\n  }}\n}}"
    )
}
