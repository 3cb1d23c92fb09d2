//! The workflow deployment a block gets: the original's default, or an operator's
//! template rendered with handlebars in strict mode.

use handlebars::Handlebars;
use sdp_config::entity::{DeployTemplate, Deployment, ProcessingBlock, WorkflowDefinition};
use serde_json::{Map, Value, json};

/// Chart of the default workflow deployment.
pub(crate) const DEFAULT_CHART: &str = "workflow";

/// What decide needs besides the view: what a deployment is rendered from besides the
/// block and its workflow definition, and how long a workflow may be without its owner.
#[derive(Clone, Debug)]
pub(crate) struct DeployContext {
    /// `env.SDP_CONFIG_HOST` given to workflows.
    pub config_host: String,
    /// `env.SDP_HELM_NAMESPACE` given to workflows.
    pub namespace: String,
    /// How long a block's owner key may be gone before the block FAILS (`SDP_OWNER_GRACE`).
    pub owner_grace: std::time::Duration,
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
            values.insert(
                "env.SDP_CONFIG_HOST".into(),
                Value::String(ctx.config_host.clone()),
            );
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
