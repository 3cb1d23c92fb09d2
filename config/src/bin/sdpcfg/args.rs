//! The command line: options through clap, the positional words through the Python
//! tool's docopt grammar, and the Python tool's input checks with its messages.
//!
//! clap's subcommand model cannot express `[watch] (ls|list) [values] [-R] <path>`
//! together with options placed anywhere, so clap takes the options (`-q`, `--prefix`,
//! `-R`, `--help`) wherever they stand and hands over the remaining words, which
//! [`parse_words`] matches against the grammar below.

use clap::Parser;
use sdp_config::entity::{WorkflowRef, WorkflowType};

/// The grammar, as the Python tool documents it (plus `watch get <path>`).
const USAGE: &str = "\
sdpcfg [options] (get|watch) <path>
       sdpcfg [options] [watch] (ls|list) [values] [-R] <path>
       sdpcfg [options] delete [-R] <path>
       sdpcfg [options] (create|update) <path> <value>
       sdpcfg [options] edit <path>
       sdpcfg [options] process <type:id:version> [<parameters>]
       sdpcfg [options] deploy <type> <name> <parameters>
       sdpcfg [options] status [--watch] [-o json|yaml] [--status <S>] [--workflow <W>]
       sdpcfg [options] workflows [-o json|yaml]
       sdpcfg [options] retry <deploy_id>...
       sdpcfg [options] guard [adopt|prune]
       sdpcfg --help";

const COMMANDS_HELP: &str = "\
Commands (each with an example):
  get <path>
      Print '<path> = <value>' (the value exactly as stored), or '<path> = None'.
        sdpcfg get /pb/realtime-20191121-0000
  watch <path>   (also: watch get <path>)
      As get, then print again each time the key changes, until Ctrl-C.
        sdpcfg watch /pb/realtime-20191121-0000/state
  ls|list [values] [-R] <path>
      List the keys that start with <path> at its depth: 'Keys with <path> prefix: a, b'.
      'values' prints '<key> = <value>' per key; -R also lists 8 levels deeper.
        sdpcfg ls -R /pb/
        sdpcfg ls values /deploy/
  watch ls|list [values] [-R] <path>
      As ls, then again each time the listing changes, until Ctrl-C.
        sdpcfg watch ls values /pb/
  create <path> <value>
      Create a key that does not exist yet, storing <value> exactly as typed.
        sdpcfg create /master '{\"state\": \"on\"}'
  update <path> <value>
      Replace the value of an existing key, storing <value> exactly as typed.
        sdpcfg update /master '{\"state\": \"off\"}'
  delete [-R] <path>
      Delete an existing key. With -R: delete the key and every key below it (8 levels),
      printing each deleted key. '/pb/a' never touches '/pb/ab'.
        sdpcfg delete -R /pb/realtime-20191121-0000
  edit <path>
      Edit a JSON value as YAML in $EDITOR, then store it back as formatted JSON.
        EDITOR=nano sdpcfg edit /deploy/realtime-20191121-0000-dask
  process <type:id:version> [<parameters>]
      Create a processing block with a new ID '<type>-<YYYYMMDD>-<NNNN>' and the given
      parameters (a YAML or JSON mapping); prints 'OK, pb_id = <id>'.
        sdpcfg process realtime:testdask:0.1.0 '{n_workers: 2}'
      With --wait[=SECONDS] (default 60): then wait until the block is STARTING,
      WAITING, RUNNING or FINISHED and print '<pb_id> <STATUS>'; exit status 1 with the
      reason when it FAILED (or was CANCELLED), or when the time is up.
        sdpcfg process --wait=30 realtime:testdask:0.1.0
  deploy <type> <name> <parameters>
      Create deployment /deploy/<name> of type helm, process-direct or kubernetes-direct
      with the given arguments (a YAML or JSON mapping). Prints nothing on success.
        sdpcfg deploy helm mydask '{chart: stable/dask, values: {worker.replicas: 2}}'
  status [--watch] [-o json|yaml] [--status <S>] [--workflow <W>]
      One line per processing block (ID, workflow, status, age, owner, reason), its
      deployments under it (ID, chart, release status, workload phase, message), the
      deployments of no block, and totals. --watch redraws on every change until
      Ctrl-C; -o prints JSON or YAML; --status FAILED,RUNNING (NONE: no state yet) and
      --workflow realtime:testdask:0.1.0 (or realtime:testdask, or testdask) filter.
        sdpcfg status --status FAILED
  workflows [-o json|yaml]
      The registered workflows: /workflow/<type>:<id>:<version> entries, and the
      registry file SDP_WORKFLOWS_URL names when it is a local file.
        sdpcfg workflows
  retry <deploy_id>...
      Ask the deployer to try failed deployments again from attempt 1, without
      touching their entries: deletes each /deploy/<deploy_id>/state, in one
      transaction, only if /deploy/<deploy_id> exists (nothing is deleted when one does
      not). A processing block failed by one of them goes back to STARTING.
        sdpcfg retry realtime-20191121-0000-workflow
  guard [adopt|prune]
      The helm deployer's database guard: the releases it holds because they were not
      made from this configuration database (e.g. etcd came back empty), which it
      neither uninstalls nor upgrades. 'guard' shows them and this database's identity;
      'guard adopt' makes them this database's (relabelled on their next helm call;
      those without a deployment entry are then uninstalled, so restore or recreate the
      entries you want kept first); 'guard prune' has the deployer uninstall them.
        sdpcfg guard adopt

A <value> or <parameters> of '-' is read from standard input:
        sdpcfg create /sb/sbi-001 - < sbi.json
-q omits confirmations ('OK', 'OK, pb_id = <id>', the keys deleted by delete -R) and
prints bare values or keys, space-separated on one line.
Put '--' before a value that starts with '-':  sdpcfg create /x -- -v

Environment:
  SDP_CONFIG_HOST      etcd host, or an etcd cluster's members as a comma-separated
                       list of host or host:port (default 127.0.0.1)
  SDP_CONFIG_PORT      etcd client port of hosts listed without one (default 2379)
  SDP_CONFIG_PROTOCOL  http or https (default http)
  SDP_CONFIG_CERT      with https: PEM file of the CA that signed etcd's certificate
                       (default: the system's trusted roots)
  SDP_CONFIG_USERNAME  user name for etcd authentication (default: none)
  SDP_CONFIG_PASSWORD  password for etcd authentication (default: none)
  SDP_CONFIG_PREFIX    global path prefix, as --prefix (default: none)
  EDITOR               editor for 'edit' (default vi). Run without a shell: split on
                       whitespace into a program and its arguments, file name appended.
  SDP_WORKFLOWS_URL    registry file read by 'workflows' when a local path or file://
                       URL (default: none)
  NO_COLOR             when set, 'status' prints no colours (default: colours on a
                       terminal only)

Exit status: 0 on success; 1 on any error (bad input, etcd unreachable, create of an
existing key, update or delete of a missing key). Errors go to standard error.

Differences from the Python sdpcfg: 'process' accepts only the workflow types realtime
and batch ('Workflow type must be 'realtime' or 'batch'!'); key paths ending in '/' are
refused for every key command; 'delete -R /pb/a' leaves '/pb/ab' alone; 'edit' refuses
to overwrite a key that changed while the editor was open; 'watch get <path>' works.";

/// Command-line options; the command itself is in `words`.
#[derive(Debug, Parser)]
#[command(
    name = "sdpcfg",
    version,
    about = "Read and change the SKA SDP configuration database (etcd), like the Python sdpcfg",
    override_usage = USAGE,
    after_help = COMMANDS_HELP,
    args_override_self = true
)]
pub struct Cli {
    /// Cut back on output: bare values or keys, no 'OK'.
    #[arg(short, long)]
    pub quiet: bool,
    /// Path prefix prepended to every path (e.g. /test), for an isolated key space.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// With ls/list: also list 8 levels below the path. With delete: delete the key and
    /// everything below it.
    #[arg(short = 'R')]
    pub recursive: bool,
    /// With status: redraw on every change, until Ctrl-C.
    #[arg(long = "watch")]
    pub watch_flag: bool,
    /// With status and workflows: print JSON or YAML instead of a table.
    #[arg(short = 'o', long = "output", value_name = "FORMAT", value_enum)]
    pub output: Option<Format>,
    /// With status: only blocks with one of these statuses (comma-separated or
    /// repeated; NONE for blocks without a state).
    #[arg(long = "status", value_name = "S", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub statuses: Vec<String>,
    /// With status: only blocks of one of these workflows (type:id:version, type:id or
    /// id; comma-separated or repeated).
    #[arg(long = "workflow", value_name = "W", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub workflows: Vec<String>,
    /// With process: wait until the block starts, at most SECONDS.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "60"
    )]
    pub wait: Option<f64>,
    /// The time `status` computes ages from (RFC 3339), instead of the clock: for tests.
    #[arg(long, hide = true, value_name = "TIME")]
    pub now: Option<String>,
    /// The command and its arguments (see Commands below).
    #[arg(value_name = "COMMAND", allow_negative_numbers = true)]
    pub words: Vec<String>,
}

/// `-o`: a format for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// What `status` shows and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOptions {
    /// Redraw on every change.
    pub watch: bool,
    /// JSON or YAML instead of the table.
    pub format: Option<Format>,
    /// Only blocks with these statuses (upper case; `NONE`: no state).
    pub statuses: Vec<String>,
    /// Only blocks of these workflows.
    pub workflows: Vec<String>,
    /// The time ages are computed from, instead of the clock.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// A command as typed, before its input is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `get <path>`, `watch <path>`.
    Get { path: String, watch: bool },
    /// `[watch] (ls|list) [values] [-R] <path>`.
    List {
        path: String,
        values: bool,
        recursive: bool,
        watch: bool,
    },
    /// `delete [-R] <path>`.
    Delete { path: String, recursive: bool },
    /// `create <path> <value>`.
    Create { path: String, value: String },
    /// `update <path> <value>`.
    Update { path: String, value: String },
    /// `edit <path>`.
    Edit { path: String },
    /// `process <type:id:version> [<parameters>]`, maybe `--wait`.
    Process {
        workflow: String,
        parameters: Option<String>,
        wait: Option<std::time::Duration>,
    },
    /// `deploy <type> <name> <parameters>`.
    Deploy {
        kind: String,
        name: String,
        parameters: String,
    },
    /// `status`.
    Status(StatusOptions),
    /// `workflows`.
    Workflows { format: Option<Format> },
    /// `retry <deploy_id>...`.
    Retry { ids: Vec<String> },
    /// `guard [adopt|prune]`.
    Guard(GuardAction),
}

/// What `guard` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Show what is held.
    Show,
    /// Make the held releases this database's.
    Adopt,
    /// Have the held releases uninstalled.
    Prune,
}

const COMMAND_NAMES: [&str; 14] = [
    "get",
    "watch",
    "ls",
    "list",
    "delete",
    "create",
    "update",
    "edit",
    "process",
    "deploy",
    "status",
    "workflows",
    "retry",
    "guard",
];

/// The command with its options: [`parse_words`], then the options that belong to
/// `status`, `workflows` and `process`, refused with any other command.
///
/// # Errors
/// A usage message.
pub fn command(cli: &Cli) -> Result<Command, String> {
    let mut command = parse_words(&cli.words, cli.recursive)?;
    let status_only = cli.watch_flag || !cli.statuses.is_empty() || !cli.workflows.is_empty();
    match &mut command {
        Command::Status(options) => {
            options.watch = cli.watch_flag;
            options.format = cli.output;
            options.statuses = cli
                .statuses
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect();
            options.workflows = cli.workflows.iter().map(|w| w.trim().to_string()).collect();
            options.now = cli.now.as_deref().map(parse_now).transpose()?;
        }
        Command::Workflows { format } if !status_only => *format = cli.output,
        Command::Process { wait, .. } if !status_only && cli.output.is_none() => {
            *wait = cli.wait.map(wait_duration).transpose()?;
        }
        _ if status_only => {
            return Err("--watch, --status and --workflow apply only to status".into());
        }
        _ if cli.output.is_some() => {
            return Err("-o/--output applies only to status and workflows".into());
        }
        _ => {}
    }
    if cli.wait.is_some() && !matches!(command, Command::Process { .. }) {
        return Err("--wait applies only to process".into());
    }
    Ok(command)
}

fn parse_now(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("--now must be an RFC 3339 time: {e}"))
}

fn wait_duration(seconds: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= 86_400)
        .ok_or_else(|| format!("--wait takes a number of seconds from 0 to 86400, not {seconds}"))
}

/// Match the positional words against the grammar.
///
/// # Errors
/// A usage message when the words fit no form.
pub fn parse_words(words: &[String], recursive: bool) -> Result<Command, String> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (watch, rest) = match words.split_first() {
        Some((&"watch", rest)) => (true, rest),
        _ => (false, &words[..]),
    };
    let s = |v: &&str| (*v).to_string();
    let list = |values: bool, path: &&str| Command::List {
        path: s(path),
        values,
        recursive,
        watch,
    };
    let command = match rest {
        [path] if watch => Command::Get {
            path: s(path),
            watch,
        },
        ["get", path] => Command::Get {
            path: s(path),
            watch,
        },
        ["ls" | "list", "values", path] => list(true, path),
        ["ls" | "list", path] => list(false, path),
        _ if watch => {
            return Err(
                "'watch' takes '<path>', 'get <path>' or 'ls|list [values] [-R] <path>'".into(),
            );
        }
        ["delete", path] => Command::Delete {
            path: s(path),
            recursive,
        },
        ["create", path, value] => Command::Create {
            path: s(path),
            value: s(value),
        },
        ["update", path, value] => Command::Update {
            path: s(path),
            value: s(value),
        },
        ["edit", path] => Command::Edit { path: s(path) },
        ["process", workflow] => Command::Process {
            workflow: s(workflow),
            parameters: None,
            wait: None,
        },
        ["process", workflow, parameters] => Command::Process {
            workflow: s(workflow),
            parameters: Some(s(parameters)),
            wait: None,
        },
        ["status"] => Command::Status(StatusOptions {
            watch: false,
            format: None,
            statuses: Vec::new(),
            workflows: Vec::new(),
            now: None,
        }),
        ["workflows"] => Command::Workflows { format: None },
        ["retry", ids @ ..] if !ids.is_empty() => Command::Retry {
            ids: ids.iter().map(s).collect(),
        },
        ["guard"] => Command::Guard(GuardAction::Show),
        ["guard", "adopt"] => Command::Guard(GuardAction::Adopt),
        ["guard", "prune"] => Command::Guard(GuardAction::Prune),
        ["deploy", kind, name, parameters] => Command::Deploy {
            kind: s(kind),
            name: s(name),
            parameters: s(parameters),
        },
        [] => return Err("no command given".into()),
        [first, ..] if COMMAND_NAMES.contains(first) => {
            return Err(format!("wrong arguments for '{first}'"));
        }
        [first, ..] => return Err(format!("unknown command '{first}'")),
    };
    if recursive && !matches!(command, Command::List { .. } | Command::Delete { .. }) {
        return Err("-R applies only to ls/list and delete".into());
    }
    Ok(command)
}

impl Command {
    /// The Python tool's input checks, with its messages (all that apply, in its order),
    /// plus the workflow type check.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut problems = Vec::new();
        let (path, is_key) = match self {
            Command::Get { path, .. }
            | Command::Create { path, .. }
            | Command::Update { path, .. }
            | Command::Edit { path } => (Some(path), true),
            Command::Delete { path, recursive } => (Some(path), !recursive),
            Command::List { path, .. } => (Some(path), false),
            Command::Process { .. }
            | Command::Deploy { .. }
            | Command::Status(_)
            | Command::Workflows { .. }
            | Command::Retry { .. }
            | Command::Guard(_) => (None, false),
        };
        if let Some(path) = path {
            if !path.starts_with('/') {
                problems.push("Path must start with '/'!");
            }
            if is_key && path.ends_with('/') {
                problems.push("Key path must not end with '/'!");
            }
            if !permissible(path) {
                problems.push("Path contains non-permissable characters!");
            }
        }
        if let Command::Process { workflow, .. } = self
            && let Err(problem) = workflow_ref(workflow)
        {
            problems.push(problem);
        }
        problems
    }
}

/// `^[a-zA-Z0-9_\-/]*$`, plus `:` and `.` in `/workflow/` keys.
fn permissible(path: &str) -> bool {
    let workflow = path.starts_with("/workflow/");
    path.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '/')
            || workflow && matches!(c, ':' | '.')
    })
}

/// Parse `type:id:version`.
///
/// # Errors
/// The message to print.
pub fn workflow_ref(spec: &str) -> Result<WorkflowRef, &'static str> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [kind, id, version] = parts[..] else {
        return Err("Please specify workflow as 'type:name:version'!");
    };
    let Some(kind) = WorkflowType::parse(kind) else {
        return Err("Workflow type must be 'realtime' or 'batch'!");
    };
    if id.is_empty() || version.is_empty() {
        return Err("Please specify workflow as 'type:name:version'!");
    }
    Ok(WorkflowRef {
        kind,
        id: id.to_string(),
        version: version.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<(Cli, Command), String> {
        let argv = std::iter::once("sdpcfg").chain(line.split_whitespace());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let command = parse_words(&cli.words, cli.recursive)?;
        Ok((cli, command))
    }

    #[test]
    fn options_may_stand_anywhere() {
        for line in ["-q get /x", "get /x -q", "get -q /x", "--quiet get /x"] {
            let (cli, command) = parse(line).unwrap();
            assert!(cli.quiet, "{line}");
            assert_eq!(
                command,
                Command::Get {
                    path: "/x".into(),
                    watch: false
                },
                "{line}"
            );
        }
        let (cli, _) = parse("ls /x --prefix /test").unwrap();
        assert_eq!(cli.prefix.as_deref(), Some("/test"));
    }

    #[test]
    fn watch_ls_values_recursive_parses() {
        let (_, command) = parse("watch ls values -R /pb/").unwrap();
        assert_eq!(
            command,
            Command::List {
                path: "/pb/".into(),
                values: true,
                recursive: true,
                watch: true
            }
        );
        let (_, command) = parse("-R list /pb/").unwrap();
        assert_eq!(
            command,
            Command::List {
                path: "/pb/".into(),
                values: false,
                recursive: true,
                watch: false
            }
        );
    }

    #[test]
    fn guard_takes_nothing_adopt_or_prune() {
        assert_eq!(parse("guard").unwrap().1, Command::Guard(GuardAction::Show));
        assert_eq!(
            parse("guard adopt").unwrap().1,
            Command::Guard(GuardAction::Adopt)
        );
        assert_eq!(
            parse("guard prune").unwrap().1,
            Command::Guard(GuardAction::Prune)
        );
        assert_eq!(
            parse("guard keep").unwrap_err(),
            "wrong arguments for 'guard'"
        );
    }

    #[test]
    fn watch_alone_and_watch_get_both_watch_a_key() {
        for line in ["watch /x", "watch get /x"] {
            assert_eq!(
                parse(line).unwrap().1,
                Command::Get {
                    path: "/x".into(),
                    watch: true
                }
            );
        }
    }

    #[test]
    fn a_dash_is_a_value_and_negative_numbers_are_values() {
        assert_eq!(
            parse("create /x -").unwrap().1,
            Command::Create {
                path: "/x".into(),
                value: "-".into()
            }
        );
        assert_eq!(
            parse("update /x -5").unwrap().1,
            Command::Update {
                path: "/x".into(),
                value: "-5".into()
            }
        );
        assert_eq!(
            parse("create /x -- -v").unwrap().1,
            Command::Create {
                path: "/x".into(),
                value: "-v".into()
            }
        );
    }

    #[test]
    fn words_outside_the_grammar_are_usage_errors() {
        assert_eq!(parse("").unwrap_err(), "no command given");
        assert_eq!(parse("frob /x").unwrap_err(), "unknown command 'frob'");
        assert_eq!(
            parse("create /x").unwrap_err(),
            "wrong arguments for 'create'"
        );
        assert_eq!(
            parse("get -R /x").unwrap_err(),
            "-R applies only to ls/list and delete"
        );
        assert!(parse("watch delete /x").is_err());
    }

    #[test]
    fn problems_use_the_python_messages_in_order() {
        let create = |p: &str| Command::Create {
            path: p.into(),
            value: "v".into(),
        };
        assert_eq!(create("pb/x").problems(), ["Path must start with '/'!"]);
        assert_eq!(
            create("/pb/").problems(),
            ["Key path must not end with '/'!"]
        );
        assert_eq!(
            create("/pb/a b").problems(),
            ["Path contains non-permissable characters!"]
        );
        assert_eq!(
            create("pb/a.b/").problems(),
            [
                "Path must start with '/'!",
                "Key path must not end with '/'!",
                "Path contains non-permissable characters!"
            ]
        );
        assert!(
            create("/workflow/realtime:testdask:0.1.0")
                .problems()
                .is_empty()
        );
        assert!(!create("/pb/realtime:testdask:0.1.0").problems().is_empty());
        let list = Command::List {
            path: "/pb/".into(),
            values: false,
            recursive: false,
            watch: false,
        };
        assert!(list.problems().is_empty());
    }

    fn command_of(line: &str) -> Result<Command, String> {
        let argv = std::iter::once("sdpcfg").chain(line.split_whitespace());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        command(&cli)
    }

    #[test]
    fn status_takes_its_options_anywhere_and_repeated() {
        let Command::Status(o) = command_of(
            "--status failed,running status --watch --status none --workflow testdask -o yaml",
        )
        .unwrap() else {
            panic!("not status")
        };
        assert!(o.watch);
        assert_eq!(o.format, Some(Format::Yaml));
        assert_eq!(o.statuses, ["FAILED", "RUNNING", "NONE"]);
        assert_eq!(o.workflows, ["testdask"]);
        let Command::Status(o) = command_of("status --now 2026-12-01T10:00:00Z").unwrap() else {
            panic!("not status")
        };
        assert_eq!(o.now.unwrap().to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert!(command_of("status --now yesterday").is_err());
    }

    #[test]
    fn wait_takes_an_optional_number_of_seconds() {
        let wait = |line: &str| match command_of(line) {
            Ok(Command::Process { wait, .. }) => Ok(wait),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(wait("process batch:x:1").unwrap(), None);
        assert_eq!(
            wait("process --wait batch:x:1").unwrap(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            wait("process batch:x:1 --wait=2.5").unwrap(),
            Some(std::time::Duration::from_millis(2500))
        );
        assert!(wait("process --wait=0 batch:x:1").is_err());
        assert!(wait("process --wait=-1 batch:x:1").is_err());
    }

    #[test]
    fn new_options_are_refused_with_other_commands() {
        assert_eq!(
            command_of("get /x --watch").unwrap_err(),
            "--watch, --status and --workflow apply only to status"
        );
        assert_eq!(
            command_of("workflows --status FAILED").unwrap_err(),
            "--watch, --status and --workflow apply only to status"
        );
        assert_eq!(
            command_of("ls /x -o json").unwrap_err(),
            "-o/--output applies only to status and workflows"
        );
        assert_eq!(
            command_of("status --wait").unwrap_err(),
            "--wait applies only to process"
        );
        assert_eq!(
            command_of("workflows -o json").unwrap(),
            Command::Workflows {
                format: Some(Format::Json)
            }
        );
        assert_eq!(
            command_of("status x").unwrap_err(),
            "wrong arguments for 'status'"
        );
    }

    #[test]
    fn workflow_specs() {
        assert_eq!(
            workflow_ref("realtime:testdask:0.1.0").unwrap().to_string(),
            "realtime:testdask:0.1.0"
        );
        assert_eq!(
            workflow_ref("realtime:testdask").unwrap_err(),
            "Please specify workflow as 'type:name:version'!"
        );
        assert_eq!(
            workflow_ref("a:b:c:d").unwrap_err(),
            "Please specify workflow as 'type:name:version'!"
        );
        assert_eq!(
            workflow_ref("batchy:x:1").unwrap_err(),
            "Workflow type must be 'realtime' or 'batch'!"
        );
        assert_eq!(
            workflow_ref("batch::1").unwrap_err(),
            "Please specify workflow as 'type:name:version'!"
        );
    }
}
