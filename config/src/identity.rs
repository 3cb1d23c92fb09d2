//! Who this process is, as other processes see it: the host name (what the Python tools
//! write into an owner key) and `<host>/<pid>` (what a daemon proclaims in an election).

/// The host name: the kernel's, else `$HOSTNAME`, else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// `<hostname>/<pid>`: unique among live processes, readable in logs and in `etcdctl`
/// output of an election.
pub fn identity() -> String {
    format!("{}/{}", hostname(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_host_slash_pid() {
        let id = identity();
        let (host, pid) = id.rsplit_once('/').unwrap_or_default();
        assert_eq!(host, hostname());
        assert_eq!(pid, std::process::id().to_string());
        assert!(!host.is_empty());
    }
}
