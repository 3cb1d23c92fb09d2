//! What a `/deploy/<id>` entry asks for, checked: a helm release spec, a refusal with
//! its reason, or a type this deployer leaves alone.
//!
//! Deployment types are dispatched here: `helm` to a release spec, `kubernetes-direct`
//! to a checked manifest (`crate::direct`), `process-direct` to [`Desired::NotHandled`].

use sdp_config::entity::{Deployment, DeploymentKind};
use serde_json::Value;

use crate::chart::{ChartSources, ResolvedChart};
use crate::direct::{DirectSpec, Kinds};
use crate::naming;
use crate::values;

/// What is needed to interpret entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecContext {
    /// Release-name prefix.
    pub prefix: String,
    /// Configuration prefix (`SDP_CONFIG_PREFIX`), marked on `kubernetes-direct` objects.
    pub config_prefix: String,
    /// Target namespace.
    pub namespace: String,
    /// Allowed chart sources.
    pub charts: ChartSources,
    /// Charts replaced (uninstall + install) rather than upgraded on change.
    pub replace_charts: Vec<String>,
    /// Kinds allowed for `kubernetes-direct` deployments.
    pub direct_kinds: Kinds,
    /// Largest values document (bytes of its JSON) of a helm deployment; 0: no limit.
    pub max_values_bytes: usize,
}

/// A checked helm release request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HelmSpec {
    /// Deployment ID.
    pub deploy_id: String,
    /// Release name.
    pub release: String,
    /// Namespace.
    pub namespace: String,
    /// The chart, resolved from an allowed source.
    pub chart: ResolvedChart,
    /// The values document (dotted keys expanded, strings typed).
    pub values: Value,
    /// Digest of chart and values.
    pub digest: String,
    /// Apply changes by uninstall + install.
    pub replace_on_change: bool,
}

/// What an entry asks for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Desired {
    /// A helm release.
    Helm(Box<HelmSpec>),
    /// One Kubernetes object (`kubernetes-direct`).
    Direct(Box<DirectSpec>),
    /// Nothing can be done with it; the reason goes to the state's message.
    Refused(String),
    /// A valid deployment of a type this deployer does not handle (the type's name).
    NotHandled(&'static str),
}

impl Desired {
    /// The digest of what is asked for, when something can be done.
    pub(crate) fn digest(&self) -> Option<&str> {
        match self {
            Desired::Helm(s) => Some(&s.digest),
            Desired::Direct(s) => Some(&s.digest),
            Desired::Refused(_) | Desired::NotHandled(_) => None,
        }
    }
}

impl SpecContext {
    /// Why `values` is too large to deploy, if it is. Measured as the compact JSON helm
    /// gets (the values file is that, indented): helm stores every release with its
    /// values in one Secret, and Kubernetes refuses Secrets over 1 MiB, late and in
    /// words a user cannot act on.
    fn too_large(&self, values: &Value) -> Option<String> {
        if self.max_values_bytes == 0 {
            return None;
        }
        let size = serde_json::to_vec(values).map_or(usize::MAX, |v| v.len());
        (size > self.max_values_bytes).then(|| {
            format!(
                "values too large: {size} bytes as JSON, the limit is {} bytes (SDP_MAX_VALUES_BYTES); helm keeps each release in a Kubernetes Secret of at most 1 MiB. Put large data in a ConfigMap or volume and pass its name instead",
                self.max_values_bytes
            )
        })
    }

    /// The release name of a deployment ID.
    pub(crate) fn release_name(&self, deploy_id: &str) -> String {
        naming::release_name(&self.prefix, deploy_id)
    }

    /// Interpret the entry at `/deploy/<key_id>` with the stored text `text`.
    pub(crate) fn desired(&self, key_id: &str, text: &str) -> Desired {
        let deployment = match Deployment::parse(text, Some(key_id)) {
            Ok(d) => d,
            Err(e) => return Desired::Refused(format!("invalid deployment: {e}")),
        };
        let args = match deployment.kind {
            DeploymentKind::Helm(args) => args,
            DeploymentKind::KubernetesDirect(args) => {
                return self.direct_desired(&deployment.id, &args);
            }
            other => return Desired::NotHandled(other.type_name()),
        };
        let chart = match self.charts.resolve(&args.chart) {
            Ok(c) => c,
            Err(e) => return Desired::Refused(e),
        };
        let values = match values::expand(&args.values) {
            Ok(v) => v,
            Err(e) => return Desired::Refused(format!("invalid values: {e}")),
        };
        if let Some(refusal) = self.too_large(&values) {
            return Desired::Refused(refusal);
        }
        // The chart as the entry names it, not where it resolved to: moving the bundled
        // charts (another image, another SDP_CHARTS_DIR) must not upgrade every release.
        let digest = naming::spec_digest(&args.chart, &values);
        let replace_on_change = self.replace_charts.contains(&chart.name);
        Desired::Helm(Box::new(HelmSpec {
            release: self.release_name(&deployment.id),
            deploy_id: deployment.id,
            namespace: self.namespace.clone(),
            chart,
            values,
            digest,
            replace_on_change,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> (tempfile::TempDir, SpecContext) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["workflow", "dask"] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("Chart.yaml"), "name: x\n").unwrap();
        }
        let charts = ChartSources::new(dir.path().to_path_buf(), vec![], vec![], vec![]);
        let ctx = SpecContext {
            prefix: String::new(),
            config_prefix: String::new(),
            namespace: "sdp".into(),
            charts,
            replace_charts: vec!["workflow".into()],
            direct_kinds: Kinds::parse(crate::direct::DEFAULT_KINDS).unwrap(),
            max_values_bytes: 512 * 1024,
        };
        (dir, ctx)
    }

    #[test]
    fn values_above_the_limit_are_refused_with_the_size_and_the_setting() {
        let (_d, mut ctx) = ctx();
        let entry = |n: usize| {
            json!({"deploy_id": "x", "type": "helm", "args": {"chart": "stable/dask",
                   "values": {"blob": "a".repeat(n)}}})
            .to_string()
        };
        assert!(matches!(ctx.desired("x", &entry(1000)), Desired::Helm(_)));
        let Desired::Refused(why) = ctx.desired("x", &entry(1024 * 1024)) else {
            panic!("a 1 MiB value is refused")
        };
        assert!(
            why.contains("SDP_MAX_VALUES_BYTES") && why.contains("1048587 bytes"),
            "{why}"
        );
        ctx.max_values_bytes = 0;
        assert!(matches!(
            ctx.desired("x", &entry(1024 * 1024)),
            Desired::Helm(_)
        ));
    }

    #[test]
    fn the_seed_dask_entry_becomes_a_typed_release_spec() {
        let (_d, ctx) = ctx();
        let text = r#"{"deploy_id": "realtime-20191121-0000-dask", "type": "helm", "args": {"chart": "stable/dask", "values": {"jupyter.enabled": "false", "scheduler.serviceType": "ClusterIP", "worker.replicas": 2}}}"#;
        let Desired::Helm(spec) = ctx.desired("realtime-20191121-0000-dask", text) else {
            panic!()
        };
        assert_eq!(spec.release, "realtime-20191121-0000-dask");
        assert_eq!(spec.chart.name, "dask");
        assert!(!spec.replace_on_change);
        assert_eq!(
            spec.values,
            json!({"jupyter": {"enabled": false}, "scheduler": {"serviceType": "ClusterIP"}, "worker": {"replicas": 2}})
        );
        // Formatting of the entry does not change the digest.
        let reformatted =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(text).unwrap()).unwrap();
        let Desired::Helm(again) = ctx.desired("realtime-20191121-0000-dask", &reformatted) else {
            panic!()
        };
        assert_eq!(again.digest, spec.digest);
    }

    #[test]
    fn moving_the_bundled_charts_does_not_change_digests() {
        let (_a, one) = ctx();
        let (_b, other) = ctx();
        let text =
            r#"{"deploy_id":"x","type":"helm","args":{"chart":"stable/dask","values":{"a":"1"}}}"#;
        let (Desired::Helm(x), Desired::Helm(y)) =
            (one.desired("x", text), other.desired("x", text))
        else {
            panic!()
        };
        assert_ne!(x.chart.reference, y.chart.reference);
        assert_eq!(x.digest, y.digest);
    }

    #[test]
    fn bad_entries_are_refused_with_reasons_and_other_types_left_alone() {
        let (_d, ctx) = ctx();
        let cases = [
            ("{not json", "invalid deployment: not valid JSON"),
            ("[1]", "must be a JSON object"),
            (
                r#"{"deploy_id":"x","type":"helm","args":[]}"#,
                "`args` must be an object",
            ),
            (
                r#"{"deploy_id":"x","type":"helm","args":{}}"#,
                "missing field `args.chart`",
            ),
            (
                r#"{"deploy_id":"y","type":"helm","args":{"chart":"workflow"}}"#,
                "does not match",
            ),
            (
                r#"{"deploy_id":"x","type":"docker","args":{}}"#,
                "must be one of",
            ),
            (
                r#"{"deploy_id":"x","type":"helm","args":{"chart":"../../etc"}}"#,
                "not allowed",
            ),
            (
                r#"{"deploy_id":"x","type":"helm","args":{"chart":"workflow","values":{"a":1,"a.b":2}}}"#,
                "invalid values",
            ),
        ];
        for (text, want) in cases {
            let Desired::Refused(reason) = ctx.desired("x", text) else {
                panic!("{text}")
            };
            assert!(reason.contains(want), "{text}: {reason}");
        }
        let d = ctx.desired(
            "x",
            r#"{"deploy_id":"x","type":"process-direct","args":{"args":["sleep"]}}"#,
        );
        assert_eq!(d, Desired::NotHandled("process-direct"));
        let Desired::Helm(w) = ctx.desired(
            "x",
            r#"{"deploy_id":"x","type":"helm","args":{"chart":"workflow"}}"#,
        ) else {
            panic!()
        };
        assert!(w.replace_on_change);
    }
}
