//! helm's command line, as far as the stand-in understands it (cobra-style flags).

use std::collections::BTreeMap;

use crate::Res;

/// How a flag is written and whether it takes a value.
#[derive(Clone, Copy)]
pub(crate) struct FlagSpec {
    long: &'static str,
    short: Option<char>,
    value: bool,
}

pub(crate) const fn flag(long: &'static str, short: Option<char>, value: bool) -> FlagSpec {
    FlagSpec { long, short, value }
}

pub(crate) const GLOBAL: &[FlagSpec] = &[
    flag("namespace", Some('n'), true),
    flag("kube-context", None, true),
    flag("kubeconfig", None, true),
    flag("debug", None, false),
    flag("help", Some('h'), false),
];

pub(crate) fn command_flags(cmd: &str) -> Option<&'static [FlagSpec]> {
    const UPGRADE: &[FlagSpec] = &[
        flag("install", Some('i'), false),
        flag("values", Some('f'), true),
        flag("labels", Some('l'), true),
        flag("timeout", None, true),
        flag("description", None, true),
        flag("output", Some('o'), true),
        flag("wait", None, false),
        flag("create-namespace", None, false),
        flag("set", None, true),
        flag("history-max", None, true),
        flag("reset-values", None, false),
        flag("version", None, true),
    ];
    const UNINSTALL: &[FlagSpec] = &[
        flag("ignore-not-found", None, false),
        flag("timeout", None, true),
        flag("wait", None, false),
        flag("keep-history", None, false),
        flag("cascade", None, true),
    ];
    const LIST: &[FlagSpec] = &[
        flag("output", Some('o'), true),
        flag("selector", Some('l'), true),
        flag("filter", Some('f'), true),
        flag("max", Some('m'), true),
        flag("offset", None, true),
        flag("all-namespaces", Some('A'), false),
        flag("short", Some('q'), false),
    ];
    const HISTORY: &[FlagSpec] = &[flag("output", Some('o'), true), flag("max", None, true)];
    const ROLLBACK: &[FlagSpec] = &[
        flag("timeout", None, true),
        flag("wait", None, false),
        flag("cleanup-on-fail", None, false),
        flag("history-max", None, true),
    ];
    const STATUS: &[FlagSpec] = &[
        flag("output", Some('o'), true),
        flag("revision", None, true),
    ];
    const TEMPLATE: &[FlagSpec] = &[
        flag("values", Some('f'), true),
        flag("set", None, true),
        flag("output", Some('o'), true),
        flag("version", None, true),
        flag("include-crds", None, false),
    ];
    const REPO: &[FlagSpec] = &[
        flag("force-update", None, false),
        flag("output", Some('o'), true),
        flag("username", None, true),
        flag("password", None, true),
    ];
    const VERSION_FLAGS: &[FlagSpec] = &[flag("short", None, false), flag("template", None, true)];
    Some(match cmd {
        "upgrade" | "install" => UPGRADE,
        "uninstall" | "delete" | "del" | "un" => UNINSTALL,
        "list" | "ls" => LIST,
        "history" | "hist" => HISTORY,
        "rollback" => ROLLBACK,
        "status" => STATUS,
        "template" => TEMPLATE,
        "repo" => REPO,
        "version" => VERSION_FLAGS,
        _ => return None,
    })
}

/// A parsed command line: positional arguments and flags by long name.
#[derive(Default, Debug)]
pub(crate) struct Cli {
    pub(crate) positional: Vec<String>,
    pub(crate) flags: BTreeMap<&'static str, Vec<String>>,
}

impl Cli {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    pub(crate) fn all(&self, name: &str) -> &[String] {
        self.flags.get(name).map_or(&[], Vec::as_slice)
    }
    pub(crate) fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
    pub(crate) fn namespace(&self) -> String {
        self.get("namespace").unwrap_or("default").to_string()
    }
}

pub(crate) fn parse(args: &[String]) -> Res<(String, Cli)> {
    let mut cli = Cli::default();
    let mut command: Option<String> = None;
    let mut specs: Vec<FlagSpec> = GLOBAL.to_vec();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_positional || !arg.starts_with('-') || arg == "-" {
            if command.is_none() {
                let extra = command_flags(arg)
                    .ok_or_else(|| format!("unknown command \"{arg}\" for \"helm\""))?;
                specs.extend_from_slice(extra);
                command = Some(arg.clone());
            } else {
                cli.positional.push(arg.clone());
            }
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (spec, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spec = specs
                .iter()
                .find(|s| s.long == name)
                .ok_or_else(|| format!("unknown flag: --{name}"))?;
            (*spec, inline)
        } else {
            let mut chars = arg[1..].chars();
            let c = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            let spec = specs
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| format!("unknown shorthand flag: '{c}' in {arg}"))?;
            let inline = if rest.is_empty() {
                None
            } else {
                Some(rest.trim_start_matches('=').to_string())
            };
            (*spec, inline)
        };
        let value = if spec.value {
            match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| format!("flag needs an argument: --{}", spec.long))?;
                    i += 1;
                    v.clone()
                }
            }
        } else {
            inline.unwrap_or_else(|| "true".into())
        };
        cli.flags.entry(spec.long).or_default().push(value);
    }
    let command = command.ok_or("no command given (fake-helm)")?;
    Ok((command, cli))
}
