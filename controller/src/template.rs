//! The workflow deployment a block gets: the original's default, or an operator's
//! template rendered with handlebars in strict mode.

use handlebars::Handlebars;
use sdp_config::Protocol;
use sdp_config::entity::{DeployTemplate, Deployment, ProcessingBlock, WorkflowDefinition};
use serde_json::{Map, Value, json};

use crate::Settings;

/// Chart of the default workflow deployment.
pub(crate) const DEFAULT_CHART: &str = "workflow";

/// The port the Python tools (and ours) use when `SDP_CONFIG_PORT` is unset.
const DEFAULT_PORT: u16 = 2379;

/// What decide needs besides the view: what a deployment is rendered from besides the
/// block and its workflow definition, and how long a workflow may be without its owner.
#[derive(Clone, Debug)]
pub(crate) struct DeployContext {
    /// `env.SDP_CONFIG_HOST` given to workflows.
    pub config_host: String,
    /// `env.SDP_CONFIG_PORT` given to workflows (only when not 2379).
    pub config_port: u16,
    /// `env.SDP_CONFIG_PROTOCOL` given to workflows (only when https).
    pub config_protocol: Protocol,
    /// `env.SDP_CONFIG_PREFIX` given to workflows (only when not empty): the tree the
    /// controller itself works in.
    pub config_prefix: String,
    /// `config_secret` of the workflow chart: the name of a Secret with the workflows'
    /// etcd credentials and CA. Only the name ever goes into etcd.
    pub config_secret: Option<String>,
    /// `env.SDP_HELM_NAMESPACE` given to workflows.
    pub namespace: String,
    /// How long a block's owner key may be gone before the block FAILS (`SDP_OWNER_GRACE`).
    pub owner_grace: std::time::Duration,
}

impl DeployContext {
    /// What workflows are told, from the controller's settings. The controller's own
    /// credentials and CA file are deliberately not among them: a deployment is stored
    /// in etcd, readable by anyone who may list `/deploy`, so workflows get those
    /// through the Secret named by `SDP_WORKFLOW_CONFIG_SECRET` instead.
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        let connection = &settings.daemon.connection;
        DeployContext {
            config_host: settings.config_host_for_workflows().to_string(),
            config_port: settings.workflow_config_port.unwrap_or(connection.port),
            config_protocol: connection.protocol,
            config_prefix: connection.prefix.clone(),
            config_secret: settings
                .workflow_config_secret
                .clone()
                .filter(|s| !s.is_empty()),
            namespace: settings.helm_namespace.clone(),
            owner_grace: settings.owner_grace,
        }
    }

    /// The values of the default deployment that tell a workflow how to reach the
    /// configuration database. Settings equal to the Python tools' defaults are left
    /// out, so that a system with default settings writes exactly the original's
    /// deployment.
    fn connection_values(&self, values: &mut Map<String, Value>) {
        values.insert(
            "env.SDP_CONFIG_HOST".into(),
            Value::String(self.config_host.clone()),
        );
        if self.config_port != DEFAULT_PORT {
            // A string, like every other env value: the container sees text anyway.
            values.insert(
                "env.SDP_CONFIG_PORT".into(),
                Value::String(self.config_port.to_string()),
            );
        }
        if self.config_protocol != Protocol::default() {
            values.insert(
                "env.SDP_CONFIG_PROTOCOL".into(),
                Value::String(self.config_protocol.to_string()),
            );
        }
        if !self.config_prefix.is_empty() {
            values.insert(
                "env.SDP_CONFIG_PREFIX".into(),
                Value::String(self.config_prefix.clone()),
            );
        }
        if let Some(secret) = &self.config_secret {
            values.insert("config_secret".into(), Value::String(secret.clone()));
        }
    }
}

/// ID of a block's workflow deployment.
pub(crate) fn workflow_deploy_id(pb_id: &str) -> String {
    format!("{pb_id}-workflow")
}

/// The workflow deployment of `pb`.
///
/// # Errors
/// A template that does not render (handlebars' message, naming the template).
pub(crate) fn workflow_deployment(
    pb: &ProcessingBlock,
    def: &WorkflowDefinition,
    ctx: &DeployContext,
) -> Result<Deployment, String> {
    let id = workflow_deploy_id(&pb.id);
    match &def.deploy {
        None => {
            let mut values = Map::new();
            ctx.connection_values(&mut values);
            values.insert(
                "env.SDP_HELM_NAMESPACE".into(),
                Value::String(ctx.namespace.clone()),
            );
            values.insert("pb_id".into(), Value::String(pb.id.clone()));
            values.insert("wf_image".into(), Value::String(def.image.clone()));
            Ok(Deployment::helm(id, DEFAULT_CHART, values))
        }
        Some(template) => render(pb, def, template, ctx)
            .map(|(chart, values)| Deployment::helm(id, chart, values)),
    }
}

fn render(
    pb: &ProcessingBlock,
    def: &WorkflowDefinition,
    template: &DeployTemplate,
    ctx: &DeployContext,
) -> Result<(String, Map<String, Value>), String> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    // Values go to helm, not into HTML.
    hb.register_escape_fn(handlebars::no_escape);
    let data = json!({
        "pb_id": pb.id,
        "workflow": {"type": pb.workflow.kind.as_str(), "id": pb.workflow.id, "version": pb.workflow.version},
        "parameters": pb.parameters,
        "sbi_id": pb.sbi_id,
        "image": def.image,
        "namespace": ctx.namespace,
        "config_host": ctx.config_host,
        "config_port": ctx.config_port,
        "config_protocol": ctx.config_protocol.to_string(),
        "config_prefix": ctx.config_prefix,
        "config_secret": ctx.config_secret.as_deref().unwrap_or_default(),
    });
    let chart = render_str(&hb, &template.chart, &data, "deploy.chart")?;
    if chart.trim().is_empty() {
        return Err(
            "the workflow's deployment template renders an empty chart name (deploy.chart)".into(),
        );
    }
    let mut values = Map::new();
    for (key, value) in &template.values {
        values.insert(
            key.clone(),
            render_value(&hb, value, &data, &format!("deploy.values.{key}"))?,
        );
    }
    Ok((chart, values))
}

fn render_value(
    hb: &Handlebars<'_>,
    value: &Value,
    data: &Value,
    field: &str,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(render_str(hb, s, data, field)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_value(hb, v, data, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        render_value(hb, v, data, &format!("{field}.{k}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn render_str(
    hb: &Handlebars<'_>,
    template: &str,
    data: &Value,
    field: &str,
) -> Result<String, String> {
    if !template.contains("{{") {
        return Ok(template.to_string());
    }
    hb.render_template(template, data).map_err(|e| {
        format!("the workflow's deployment template {field} = {template:?} does not render: {e}")
    })
}

#[cfg(test)]
mod tests {
    use sdp_config::entity::WorkflowRef;

    use super::*;

    fn block() -> ProcessingBlock {
        let mut pb = ProcessingBlock::new(
            "batch-20200101-0000",
            WorkflowRef::parse_spec("batch:big:1.0").unwrap(),
        );
        pb.parameters.insert("mem".into(), json!("4Gi"));
        pb.parameters.insert("n".into(), json!(3));
        pb
    }

    fn ctx() -> DeployContext {
        crate::fixtures::deploy_context("etcd")
    }

    #[test]
    fn the_default_deployment_is_the_originals() {
        let def =
            WorkflowDefinition::parse_db("batch:big:1.0", r#"{"image": "reg/big:1.0"}"#).unwrap();
        let d = workflow_deployment(&block(), &def, &ctx()).unwrap();
        assert_eq!(
            d.to_json(),
            "{\n  \"args\": {\n    \"chart\": \"workflow\",\n    \"values\": {\n      \"env.SDP_CONFIG_HOST\": \"etcd\",\n      \"env.SDP_HELM_NAMESPACE\": \"sdp\",\n      \"pb_id\": \"batch-20200101-0000\",\n      \"wf_image\": \"reg/big:1.0\"\n    }\n  },\n  \"deploy_id\": \"batch-20200101-0000-workflow\",\n  \"type\": \"helm\"\n}"
        );
    }

    /// Settings as `sdp-controller` reads them from this environment (`SDP_…`, no flags).
    fn settings(env: &[(&str, &str)]) -> Settings {
        use clap::Parser;
        let mut args = vec!["sdp-controller".to_string()];
        for (name, value) in env {
            // Every setting's flag is its variable without SDP_, lower case, dashes.
            let flag = name
                .trim_start_matches("SDP_")
                .to_lowercase()
                .replace('_', "-");
            args.push(format!("--{flag}={value}"));
        }
        Settings::try_parse_from(args).unwrap()
    }

    fn default_deployment(settings: &Settings) -> Deployment {
        let def =
            WorkflowDefinition::parse_db("batch:big:1.0", r#"{"image": "reg/big:1.0"}"#).unwrap();
        workflow_deployment(&block(), &def, &DeployContext::from_settings(settings)).unwrap()
    }

    #[test]
    fn default_connection_settings_add_nothing_to_the_originals_deployment() {
        let d = default_deployment(&settings(&[("SDP_CONFIG_HOST", "etcd")]));
        assert_eq!(
            d.to_json(),
            workflow_deployment(
                &block(),
                &WorkflowDefinition::parse_db("batch:big:1.0", r#"{"image": "reg/big:1.0"}"#)
                    .unwrap(),
                &ctx()
            )
            .unwrap()
            .to_json()
        );
        // Defaults given explicitly are still defaults.
        let explicit = settings(&[
            ("SDP_CONFIG_HOST", "etcd"),
            ("SDP_CONFIG_PORT", "2379"),
            ("SDP_CONFIG_PROTOCOL", "http"),
            ("SDP_CONFIG_PREFIX", ""),
            ("SDP_WORKFLOW_CONFIG_SECRET", ""),
        ]);
        assert_eq!(default_deployment(&explicit).to_json(), d.to_json());
    }

    #[test]
    fn a_non_default_port_protocol_and_prefix_reach_the_workflow() {
        let s = settings(&[
            ("SDP_CONFIG_HOST", "etcd"),
            ("SDP_CONFIG_PORT", "2479"),
            ("SDP_CONFIG_PROTOCOL", "https"),
            ("SDP_CONFIG_PREFIX", "/tenant1"),
            ("SDP_WORKFLOW_CONFIG_SECRET", "sdp-etcd-client"),
        ]);
        assert_eq!(
            default_deployment(&s).to_json(),
            r#"{
  "args": {
    "chart": "workflow",
    "values": {
      "config_secret": "sdp-etcd-client",
      "env.SDP_CONFIG_HOST": "etcd",
      "env.SDP_CONFIG_PORT": "2479",
      "env.SDP_CONFIG_PREFIX": "/tenant1",
      "env.SDP_CONFIG_PROTOCOL": "https",
      "env.SDP_HELM_NAMESPACE": "sdp",
      "pb_id": "batch-20200101-0000",
      "wf_image": "reg/big:1.0"
    }
  },
  "deploy_id": "batch-20200101-0000-workflow",
  "type": "helm"
}"#
        );
        // Each on its own, and the workflows' own port wins over the controller's.
        let one = |env: &[(&str, &str)]| {
            let v = default_deployment(&settings(env)).to_value();
            v["args"]["values"].as_object().unwrap().clone()
        };
        let v = one(&[("SDP_CONFIG_PREFIX", "/tenant1")]);
        assert_eq!(v["env.SDP_CONFIG_PREFIX"], "/tenant1");
        assert_eq!(v.len(), 5, "{v:?}");
        let v = one(&[
            ("SDP_CONFIG_PORT", "2479"),
            ("SDP_WORKFLOW_CONFIG_PORT", "32379"),
        ]);
        assert_eq!(v["env.SDP_CONFIG_PORT"], "32379");
        let v = one(&[
            ("SDP_CONFIG_PORT", "2479"),
            ("SDP_WORKFLOW_CONFIG_PORT", "2379"),
        ]);
        assert!(!v.contains_key("env.SDP_CONFIG_PORT"), "{v:?}");
    }

    #[test]
    fn credentials_and_ca_reach_workflows_only_as_a_secret_name() {
        let secret = [
            ("SDP_CONFIG_USERNAME", "sdp-user"),
            ("SDP_CONFIG_PASSWORD", "s3cret-pw"),
            ("SDP_CONFIG_CERT", "/etc/sdp-config/ca.crt"),
            ("SDP_CONFIG_PROTOCOL", "https"),
        ];
        let with_name = [
            &secret[..],
            &[("SDP_WORKFLOW_CONFIG_SECRET", "sdp-etcd-client")],
        ]
        .concat();
        for env in [&secret[..], &with_name[..]] {
            let text = default_deployment(&settings(env)).to_json();
            for leak in [
                "sdp-user",
                "s3cret-pw",
                "ca.crt",
                "USERNAME",
                "PASSWORD",
                "CERT",
            ] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        let v = default_deployment(&settings(&with_name)).to_value();
        assert_eq!(v["args"]["values"]["config_secret"], "sdp-etcd-client");
    }

    #[test]
    fn templates_get_the_connection_settings_as_variables() {
        let def = WorkflowDefinition::parse_db(
            "batch:big:1.0",
            r#"{"image": "i", "deploy": {"chart": "c", "values": {"env": {
                "SDP_CONFIG_PORT": "{{config_port}}", "SDP_CONFIG_PROTOCOL": "{{config_protocol}}",
                "SDP_CONFIG_PREFIX": "{{config_prefix}}"},
                "secret": "{{#if config_secret}}{{config_secret}}{{else}}none{{/if}}"}}}"#,
        )
        .unwrap();
        let render = |env: &[(&str, &str)]| {
            let ctx = DeployContext::from_settings(&settings(env));
            workflow_deployment(&block(), &def, &ctx)
                .unwrap()
                .to_value()["args"]["values"]
                .clone()
        };
        assert_eq!(
            render(&[]),
            json!({"env": {"SDP_CONFIG_PORT": "2379", "SDP_CONFIG_PROTOCOL": "http",
                "SDP_CONFIG_PREFIX": ""}, "secret": "none"})
        );
        assert_eq!(
            render(&[
                ("SDP_CONFIG_PORT", "2479"),
                ("SDP_CONFIG_PROTOCOL", "https"),
                ("SDP_CONFIG_PREFIX", "/tenant1"),
                ("SDP_CONFIG_PASSWORD", "s3cret-pw"),
                ("SDP_WORKFLOW_CONFIG_SECRET", "sdp-etcd-client"),
            ]),
            json!({"env": {"SDP_CONFIG_PORT": "2479", "SDP_CONFIG_PROTOCOL": "https",
                "SDP_CONFIG_PREFIX": "/tenant1"}, "secret": "sdp-etcd-client"})
        );
    }

    #[test]
    fn templates_render_every_string_from_the_block_and_settings() {
        let def = WorkflowDefinition::parse_db(
            "batch:big:1.0",
            r#"{"image": "reg/big:1.0", "deploy": {"chart": "{{workflow.id}}-chart", "values": {
                "image": "{{image}}", "mem": "{{parameters.mem}}", "replicas": "{{parameters.n}}",
                "env": {"PB": "{{pb_id}}", "NS": "{{namespace}}", "HOST": "{{config_host}}"},
                "args": ["--pb", "{{pb_id}}"], "plain": 7, "amp": "a&b{{workflow.version}}"}}}"#,
        )
        .unwrap();
        let d = workflow_deployment(&block(), &def, &ctx()).unwrap();
        let v = d.to_value();
        assert_eq!(v["args"]["chart"], "big-chart");
        let values = &v["args"]["values"];
        assert_eq!(values["image"], "reg/big:1.0");
        assert_eq!(values["mem"], "4Gi");
        assert_eq!(values["replicas"], "3");
        assert_eq!(
            values["env"],
            json!({"PB": "batch-20200101-0000", "NS": "sdp", "HOST": "etcd"})
        );
        assert_eq!(values["args"], json!(["--pb", "batch-20200101-0000"]));
        assert_eq!(values["plain"], 7);
        assert_eq!(values["amp"], "a&b1.0");
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_the_field() {
        let def = WorkflowDefinition::parse_db(
            "batch:big:1.0",
            r#"{"image": "i", "deploy": {"chart": "c", "values": {"mem": "{{parameters.memory}}"}}}"#,
        )
        .unwrap();
        let err = workflow_deployment(&block(), &def, &ctx()).unwrap_err();
        assert!(err.contains("deploy.values.mem"), "{err}");
        assert!(err.contains("parameters.memory"), "{err}");
        let def = WorkflowDefinition::parse_db(
            "batch:big:1.0",
            r#"{"image": "i", "deploy": {"chart": "{{#if}}"}}"#,
        )
        .unwrap();
        let err = workflow_deployment(&block(), &def, &ctx()).unwrap_err();
        assert!(err.contains("deploy.chart"), "{err}");
    }
}
