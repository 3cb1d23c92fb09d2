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
  deploy <type> <name> <parameters>
      Create deployment /deploy/<name> of type helm, process-direct or kubernetes-direct
      with the given arguments (a YAML or JSON mapping). Prints nothing on success.
        sdpcfg deploy helm mydask '{chart: stable/dask, values: {worker.replicas: 2}}'

A <value> or <parameters> of '-' is read from standard input:
        sdpcfg create /sb/sbi-001 - < sbi.json
-q omits confirmations ('OK', 'OK, pb_id = <id>', the keys deleted by delete -R) and
prints bare values or keys, space-separated on one line.
Put '--' before a value that starts with '-':  sdpcfg create /x -- -v

Environment:
  SDP_CONFIG_HOST      etcd host (default 127.0.0.1)
  SDP_CONFIG_PORT      etcd client port (default 2379)
  SDP_CONFIG_PROTOCOL  http or https (default http)
  SDP_CONFIG_CERT      with https: PEM file of the CA that signed etcd's certificate
                       (default: the system's trusted roots)
  SDP_CONFIG_USERNAME  user name for etcd authentication (default: none)
  SDP_CONFIG_PASSWORD  password for etcd authentication (default: none)
  SDP_CONFIG_PREFIX    global path prefix, as --prefix (default: none)
  EDITOR               editor for 'edit' (default vi). Run without a shell: split on
                       whitespace into a program and its arguments, file name appended.

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
    /// The command and its arguments (see Commands below).
    #[arg(value_name = "COMMAND", allow_negative_numbers = true)]
    pub words: Vec<String>,
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
    /// `process <type:id:version> [<parameters>]`.
    Process {
        workflow: String,
        parameters: Option<String>,
    },
    /// `deploy <type> <name> <parameters>`.
    Deploy {
        kind: String,
        name: String,
        parameters: String,
    },
}

const COMMAND_NAMES: [&str; 10] = [
    "get", "watch", "ls", "list", "delete", "create", "update", "edit", "process", "deploy",
];

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
        },
        ["process", workflow, parameters] => Command::Process {
            workflow: s(workflow),
            parameters: Some(s(parameters)),
        },
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
            Command::Process { .. } | Command::Deploy { .. } => (None, false),
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
