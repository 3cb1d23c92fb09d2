//! `watch` and `watch ls`: printing again after changes, Ctrl-C exits quietly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sdp_testing::EtcdServer;

use crate::harness::{ok, sdpcfg};
use crate::start;

/// A running `sdpcfg watch …` (or `status --watch`) whose output lines arrive on a
/// channel.
pub struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    pub fn start(etcd: &EtcdServer, args: &[&str]) -> Watching {
        let mut cmd = sdpcfg(etcd, args).into_command();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines }
    }

    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from sdpcfg watch within 30 s")
    }

    /// Nothing more printed for a little while.
    fn quiet_for(&self, time: Duration) {
        if let Ok(line) = self.lines.recv_timeout(time) {
            panic!("unexpected output: {line}");
        }
    }

    pub fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        assert!(status.unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                return (status, stderr);
            }
            assert!(
                Instant::now() < deadline,
                "sdpcfg watch did not exit after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_the_value_again_after_every_change() {
    let (etcd, db) = start();
    db.put(&[("/x", "1")]);
    let watching = Watching::start(&etcd, &["watch", "get", "/x"]);
    assert_eq!(watching.next_line(), "/x = 1");
    db.put(&[("/x", "2")]);
    assert_eq!(watching.next_line(), "/x = 2");
    db.put(&[("/y", "unrelated")]);
    watching.quiet_for(Duration::from_millis(500));
    assert_eq!(sdpcfg(&etcd, &["delete", "/x"]).run(), ok("OK\n"));
    assert_eq!(watching.next_line(), "/x = None");
    drop(watching);

    let watching = Watching::start(&etcd, &["-q", "watch", "/x"]);
    assert_eq!(watching.next_line(), "None");
    db.put(&[("/x", "3")]);
    assert_eq!(watching.next_line(), "3");
}

#[test]
fn watch_ls_follows_the_listing_and_ctrl_c_exits_quietly() {
    let (etcd, db) = start();
    db.put(&[("/pb/a", "1")]);
    let watching = Watching::start(&etcd, &["watch", "ls", "values", "-R", "/pb/"]);
    assert_eq!(watching.next_line(), "Keys with /pb/ prefix:");
    assert_eq!(watching.next_line(), "/pb/a = 1");
    db.put(&[("/pb/a/state", "s")]);
    assert_eq!(watching.next_line(), "Keys with /pb/ prefix:");
    assert_eq!(watching.next_line(), "/pb/a = 1");
    assert_eq!(watching.next_line(), "/pb/a/state = s");
    let (status, stderr) = watching.interrupt();
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""));

    // Keys only: printed again when keys come or go, not when a value changes.
    let watching = Watching::start(&etcd, &["watch", "list", "/pb/"]);
    assert_eq!(watching.next_line(), "Keys with /pb/ prefix: /pb/a");
    db.put(&[("/pb/a", "changed")]);
    watching.quiet_for(Duration::from_millis(500));
    db.put(&[("/pb/b", "new")]);
    assert_eq!(watching.next_line(), "Keys with /pb/ prefix: /pb/a, /pb/b");
    let (status, stderr) = watching.interrupt();
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""));
}
