"""Structural checks of rendered Helm charts, for scripts/check-charts.sh.

    check_manifests.py <check> <rendered.yaml> [arguments]

Each check prints what is wrong and exits 1, or prints nothing and exits 0. Every check
first requires that the objects it is about exist, so that an empty or wrong rendering
fails instead of passing vacuously. Needs PyYAML: check-charts.sh runs this with the
Python of kubernetes-validate's virtual environment, which has it.
"""

import json
import sys

import yaml

# etcd's ports, by name and number (a NetworkPolicy may use either).
PORTS = {"client": 2379, "peer": 2380}
WORKLOADS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


class Failed(Exception):
    pass


def ensure(condition, message):
    if not condition:
        raise Failed(message)


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def pod_template(obj):
    """(metadata, spec) of the pods a workload object makes."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj.get("metadata", {}), obj["spec"]
    spec = obj["spec"]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec["template"]
    return template.get("metadata", {}), template["spec"]


def containers(pod_spec):
    return [("initContainer", c) for c in pod_spec.get("initContainers") or []] + [
        ("container", c) for c in pod_spec.get("containers") or []
    ]


def env_value(container, name):
    for e in container.get("env") or []:
        if e.get("name") == name:
            return e.get("value")
    return None


def labels_match(selector, labels):
    """Does a label selector (matchLabels/matchExpressions) select these labels?"""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- checks ---------------------------------------------------------------------------


def check_rbac(path):
    """No wildcard in any rule of any Role or ClusterRole."""
    docs = load(path)
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    ensure(roles, "no Role or ClusterRole rendered")
    bad = []
    for role in roles:
        for i, rule in enumerate(role.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for item in rule.get(field) or []:
                    if "*" in str(item):
                        bad.append(f"{name_of(role)} rule {i}: {field} contains {item!r}")
    ensure(not bad, "wildcard RBAC:\n" + "\n".join(bad))


# Kind -> (API group, resource) for what the deployer may create in its namespace.
RESOURCES = {
    "Pod": ("", "pods"),
    "Service": ("", "services"),
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "Job": ("batch", "jobs"),
}
# The deployer's default allow-list for kubernetes-direct deployments.
DIRECT_KINDS = ("ConfigMap", "Service", "Pod", "Deployment", "StatefulSet", "Job", "PersistentVolumeClaim")
MANAGE = {"get", "list", "create", "update", "patch", "delete"}


def check_role_covers(path, bundled_path):
    """The deployer's Role in the target namespace grants what helm and the deployer need:
    managing every kind the bundled charts render and every kubernetes-direct kind,
    helm's release Secrets, and watching pods, jobs, replicasets and events."""
    docs = load(path)
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-deployer")]
    ensure(len(roles) == 1, f"expected one deployer Role, found {len(roles)}")
    granted = {}
    for rule in roles[0].get("rules") or []:
        ensure(not rule.get("resourceNames"), "a rule limited to resourceNames")
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                granted.setdefault((group, resource), set()).update(rule.get("verbs") or [])
    bundled = {d["kind"] for d in load(bundled_path)}
    ensure(bundled >= {"Pod", "Deployment", "Service"}, f"the bundled charts rendered only {sorted(bundled)}")
    need = {}
    for kind in bundled | set(DIRECT_KINDS):
        ensure(kind in RESOURCES, f"{kind}: no resource known for it (add it to this check and the Role)")
        need[RESOURCES[kind]] = set(MANAGE)
    need[("", "secrets")] = {"get", "list", "create", "update", "delete"}  # helm's release storage
    for key in (("", "pods"), ("batch", "jobs"), ("apps", "replicasets"), ("", "events"), ("events.k8s.io", "events")):
        need.setdefault(key, set()).update({"get", "list", "watch"})
    missing = [f"{g or 'core'}/{r}: {sorted(v - granted.get((g, r), set()))}"
               for (g, r), v in sorted(need.items()) if v - granted.get((g, r), set())]
    ensure(not missing, "the deployer's Role lacks:\n" + "\n".join(missing))


def check_hardened(path):
    """Every container and initContainer: runAsNonRoot (container or pod), no privilege
    escalation, every capability dropped, seccomp RuntimeDefault (container or pod), cpu
    and memory requests, a memory limit."""
    docs = load(path)
    workloads = [d for d in docs if d.get("kind") in WORKLOADS]
    ensure(workloads, "no workload (Pod, Deployment, StatefulSet, Job, …) rendered")
    problems = []
    for obj in workloads:
        _, spec = pod_template(obj)
        pod_sc = spec.get("securityContext") or {}
        found = containers(spec)
        if not found:
            problems.append(f"{name_of(obj)}: no containers")
        for role, c in found:
            where = f"{name_of(obj)} {role} {c.get('name')}"
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if non_root is not True:
                problems.append(f"{where}: runAsNonRoot is not true (container or pod)")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                problems.append(f"{where}: runAsUser 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities.drop lacks ALL")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile")) or {}
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            resources = c.get("resources") or {}
            requests = resources.get("requests") or {}
            for r in ("cpu", "memory"):
                if r not in requests:
                    problems.append(f"{where}: no {r} request")
            if "memory" not in (resources.get("limits") or {}):
                problems.append(f"{where}: no memory limit")
    ensure(not problems, "\n".join(problems))


def etcd_statefulset(docs):
    found = [
        s
        for s in of_kind(docs, "StatefulSet")
        if s["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        == "etcd"
    ]
    ensure(len(found) == 1, f"expected one etcd StatefulSet, found {len(found)}")
    return found[0]


def check_etcd_persistent(path):
    """The etcd StatefulSet keeps its data directory on a volume claim, not an emptyDir."""
    sts = etcd_statefulset(load(path))
    spec = sts["spec"]
    etcd = spec["template"]["spec"]["containers"][0]
    data_dir = env_value(etcd, "ETCD_DATA_DIR") or ""
    mounts = [m for m in etcd.get("volumeMounts") or [] if data_dir.startswith(m["mountPath"])]
    ensure(mounts, f"no volume mounted over the data directory {data_dir!r}")
    volume = mounts[0]["name"]
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []]
    ensure(volume in claims, f"data volume {volume!r} is not a volumeClaimTemplate ({claims})")
    pod_volumes = [v["name"] for v in spec["template"]["spec"].get("volumes") or []]
    ensure(volume not in pod_volumes, f"data volume {volume!r} is also a pod volume (emptyDir?)")


def check_namespace_kept(path):
    """Every Namespace (at least one) survives `helm uninstall`."""
    namespaces = of_kind(load(path), "Namespace")
    ensure(namespaces, "no Namespace rendered")
    for ns in namespaces:
        policy = (ns["metadata"].get("annotations") or {}).get("helm.sh/resource-policy")
        ensure(policy == "keep", f"{name_of(ns)}: helm.sh/resource-policy is {policy!r}, not 'keep'")


def check_etcd_cluster(path, replicas, namespace, scheme="http"):
    """An n-member etcd: n replicas started together, peers found through the headless
    Service, --initial-cluster naming every member, the daemons given every member."""
    n = int(replicas)
    docs = load(path)
    sts = etcd_statefulset(docs)
    name, spec = sts["metadata"]["name"], sts["spec"]
    ensure(spec.get("replicas") == n, f"{name}: replicas {spec.get('replicas')}, not {n}")
    if n > 1:
        ensure(spec.get("podManagementPolicy") == "Parallel",
               f"{name}: members must start together (podManagementPolicy Parallel)")
    headless_name = spec["serviceName"]
    services = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == headless_name]
    ensure(len(services) == 1, f"no Service {headless_name} (the StatefulSet's serviceName)")
    headless = services[0]["spec"]
    ensure(headless.get("clusterIP") == "None", f"{headless_name} is not headless")
    ensure(headless.get("publishNotReadyAddresses") is True,
           f"{headless_name}: members must resolve each other before they are ready")
    ensure(2380 in [p["port"] for p in headless.get("ports", [])], f"{headless_name}: no peer port 2380")
    ensure(labels_match(headless.get("selector") and {"matchLabels": headless["selector"]},
                        spec["template"]["metadata"]["labels"]),
           f"{headless_name} does not select the etcd pods")
    domain = f"{headless_name}.{namespace}.svc"
    etcd = spec["template"]["spec"]["containers"][0]
    members = [f"{name}-{i}" for i in range(n)]
    want = ",".join(f"{m}={scheme}://{m}.{domain}:2380" for m in members)
    got = env_value(etcd, "ETCD_INITIAL_CLUSTER")
    ensure(got == want, f"ETCD_INITIAL_CLUSTER is {got!r}, not {want!r}")
    ensure(env_value(etcd, "ETCD_INITIAL_CLUSTER_STATE") == "new", "ETCD_INITIAL_CLUSTER_STATE is not 'new'")
    name_env = [e for e in etcd.get("env") or [] if e["name"] == "ETCD_NAME"]
    ensure(name_env and name_env[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
           "ETCD_NAME is not the pod's name")
    peer = env_value(etcd, "ETCD_INITIAL_ADVERTISE_PEER_URLS")
    ensure(peer == f"{scheme}://$(ETCD_NAME).{domain}:2380", f"ETCD_INITIAL_ADVERTISE_PEER_URLS is {peer!r}")
    hosts = []
    for d in of_kind(docs, "Deployment"):
        for _, c in containers(pod_template(d)[1]):
            host = env_value(c, "SDP_CONFIG_HOST")
            if host is not None:
                hosts.append((name_of(d), host, env_value(c, "SDP_CONFIG_PORT")))
    ensure(len(hosts) >= 2, f"expected the controller and the deployer to have SDP_CONFIG_HOST: {hosts}")
    if n > 1:
        want_hosts = ",".join(f"{m}.{domain}:2379" for m in members)
        for obj, host, _ in hosts:
            ensure(host == want_hosts, f"{obj}: SDP_CONFIG_HOST is {host!r}, not {want_hosts!r}")
        budgets = [p for p in of_kind(docs, "PodDisruptionBudget")
                   if labels_match(p["spec"].get("selector"), spec["template"]["metadata"]["labels"])]
        ensure(len(budgets) == 1 and budgets[0]["spec"].get("maxUnavailable") == 1,
               "expected one PodDisruptionBudget with maxUnavailable 1 over the etcd members")


def workflow_pod(path):
    pods = of_kind(load(path), "Pod")
    ensure(len(pods) == 1, f"expected one Pod, found {len(pods)}")
    return pods[0]


def check_config_secret(plain_path, with_path, secret):
    """The workflow pod rendered with config_secret is the pod rendered without it plus
    exactly: SDP_CONFIG_USERNAME/PASSWORD from optional secretKeyRefs, the CA mounted
    read-only at /etc/sdp-config/ca.crt and SDP_CONFIG_CERT naming it."""
    plain, pod = workflow_pod(plain_path), workflow_pod(with_path)
    ensure("config_secret" not in json.dumps(plain) and secret not in json.dumps(plain),
           "the pod without config_secret mentions it")
    spec = pod["spec"]
    c = spec["containers"][0]
    env = c.get("env") or []
    added = {}
    for e in env:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            ensure(ref.get("name") == secret and ref.get("optional") is True,
                   f"{e['name']}: {ref} is not an optional reference to {secret}")
            added[e["name"]] = ref.get("key")
    ensure(added == {"SDP_CONFIG_USERNAME": "username", "SDP_CONFIG_PASSWORD": "password"},
           f"secret-backed variables are {added}")
    ensure(env_value(c, "SDP_CONFIG_CERT") == "/etc/sdp-config/ca.crt", "SDP_CONFIG_CERT is not /etc/sdp-config/ca.crt")
    mounts = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/etc/sdp-config"]
    ensure(len(mounts) == 1 and mounts[0].get("readOnly") is True, "no read-only mount at /etc/sdp-config")
    volumes = [v for v in spec.get("volumes") or [] if v["name"] == mounts[0]["name"]]
    ensure(len(volumes) == 1, "the /etc/sdp-config mount has no volume")
    src = volumes[0].get("secret") or {}
    ensure(src.get("secretName") == secret and src.get("optional") is True
           and src.get("items") == [{"key": "ca.crt", "path": "ca.crt"}],
           f"the /etc/sdp-config volume is not ca.crt of the optional Secret {secret}: {volumes[0]}")
    # Take the additions away again: what is left must be the plain pod, byte for byte.
    c["env"] = [e for e in env if e["name"] not in added and e["name"] != "SDP_CONFIG_CERT"]
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m is not mounts[0]]
    spec["volumes"] = [v for v in spec["volumes"] if v is not volumes[0]]
    for holder, key in ((c, "env"), (c, "volumeMounts"), (spec, "volumes")):
        if not holder[key]:
            del holder[key]
    ensure(pod == plain, "apart from the additions, the pods differ:\n"
           + yaml.safe_dump(plain) + "---\n" + yaml.safe_dump(pod))


def check_controller_env(path, *pairs):
    """The controller's container has exactly these plain env values (NAME=value), and
    no variable for each NAME= given with an empty value."""
    deployments = [d for d in of_kind(load(path), "Deployment")
                   if d["metadata"]["name"].endswith("-controller")]
    ensure(len(deployments) == 1, f"expected one controller Deployment, found {len(deployments)}")
    _, spec = pod_template(deployments[0])
    c = spec["containers"][0]
    names = [e["name"] for e in c.get("env") or []]
    for pair in pairs:
        name, value = pair.split("=", 1)
        if value:
            ensure(env_value(c, name) == value,
                   f"the controller's {name} is {env_value(c, name)!r}, not {value!r}")
        else:
            ensure(name not in names, f"the controller has {name}")


def check_workflow_env(path, secret, *pairs):
    """The workflow pod has these plain env values (NAME=value), and with a secret
    SDP_CONFIG_USERNAME/PASSWORD from it: credentials never as plain values."""
    c = workflow_pod(path)["spec"]["containers"][0]
    for pair in pairs:
        name, value = pair.split("=", 1)
        ensure(env_value(c, name) == value,
               f"the workflow's {name} is {env_value(c, name)!r}, not {value!r}")
    for e in c.get("env") or []:
        if e["name"] in ("SDP_CONFIG_USERNAME", "SDP_CONFIG_PASSWORD"):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            ensure("value" not in e and ref.get("name") == secret,
                   f"{e['name']} is not taken from Secret {secret}: {e}")


def check_registry(path, original, registry=""):
    """The registry ConfigMap is the bundled file (byte for byte when no registry is set),
    or the same document with every repository path replaced by the registry."""
    maps = [m for m in of_kind(load(path), "ConfigMap") if "workflows.json" in (m.get("data") or {})]
    ensure(len(maps) == 1, f"expected one ConfigMap with workflows.json, found {len(maps)}")
    text = maps[0]["data"]["workflows.json"]
    with open(original, encoding="utf-8") as f:
        original_text = f.read()
    if not registry:
        ensure(text == original_text, "workflows.json differs from the bundled file")
        return
    got, want = json.loads(text), json.loads(original_text)
    ensure(got["repositories"], "no repositories")
    for repo in got["repositories"]:
        ensure(repo["path"] == registry, f"repository {repo['name']}: path {repo['path']!r}, not {registry!r}")
    for repo in want["repositories"]:
        repo["path"] = registry
    ensure(got == want, "apart from the repository paths, the registry differs")


def check_network_policy(path, workflow_path, target):
    """etcd's client port only from the SDP pods: the daemons and the auth Job in the
    release namespace, workflow pods in the target namespace, pods labelled as
    configuration clients; nothing else."""
    docs = load(path)
    sts = etcd_statefulset(docs)
    etcd_labels = sts["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in of_kind(docs, "NetworkPolicy") if labels_match(p["spec"]["podSelector"], etcd_labels)]
    ensure(len(policies) == 1, f"expected one NetworkPolicy over the etcd pods, found {len(policies)}")
    spec = policies[0]["spec"]
    ensure("Ingress" in spec.get("policyTypes", []), "the policy does not restrict ingress")
    release_ns = "__release__"

    def allowed(labels, namespace, port):
        for rule in spec.get("ingress") or []:
            ensure(rule.get("from"), "an ingress rule without 'from' lets everyone in")
            ensure(rule.get("ports"), "an ingress rule without 'ports' opens every port")
            if not {port, PORTS[port]} & {p.get("port") for p in rule["ports"]}:
                continue
            for peer in rule["from"]:
                ns_sel = peer.get("namespaceSelector")
                if ns_sel is None:
                    ns_ok = namespace == release_ns
                else:
                    ns_ok = labels_match(ns_sel, {"kubernetes.io/metadata.name": namespace})
                pod_sel = peer.get("podSelector")
                if ns_ok and (pod_sel is None or labels_match(pod_sel, labels)):
                    return True
        return False

    pods = [(name_of(d), pod_template(d)[0].get("labels") or {}) for d in docs
            if d.get("kind") in WORKLOADS and d is not sts]
    ensure(len(pods) >= 2, "expected at least the controller and the deployer")
    for obj, labels in pods:
        ensure(allowed(labels, release_ns, "client"), f"{obj} may not reach etcd's client port")
    wf = workflow_pod(workflow_path)["metadata"]["labels"]
    ensure(allowed(wf, target, "client"), f"workflow pods in {target} may not reach etcd")
    ensure(not allowed(wf, "elsewhere", "client"), "workflow-labelled pods of any namespace may reach etcd")
    tool = {"sdp.skao.int/config-client": "true"}
    ensure(allowed(tool, release_ns, "client") and allowed(tool, target, "client"),
           "pods labelled sdp.skao.int/config-client=true may not reach etcd")
    stranger = {"app": "something-else"}
    for ns in (release_ns, target):
        ensure(not allowed(stranger, ns, "client"), f"an unrelated pod in {ns} may reach etcd")
    if sts["spec"].get("replicas", 1) > 1:
        ensure(allowed(etcd_labels, release_ns, "peer"), "etcd members may not reach each other")
        for obj, labels in pods:
            ensure(not allowed(labels, release_ns, "peer"), f"{obj} may reach etcd's peer port")


def check_service_monitor(path):
    """A ServiceMonitor (monitoring.coreos.com/v1, no schema in kubernetes-validate) that
    selects the Services of both daemons and of every other Deployment whose pods say they
    serve metrics (the console), and scrapes /metrics on their http port."""
    docs = load(path)
    monitors = of_kind(docs, "ServiceMonitor")
    ensure(len(monitors) == 1, f"expected one ServiceMonitor, found {len(monitors)}")
    m = monitors[0]
    ensure(m.get("apiVersion") == "monitoring.coreos.com/v1", f"apiVersion {m.get('apiVersion')}")
    spec = m["spec"]
    endpoints = spec.get("endpoints") or []
    ensure(endpoints, "no endpoints")
    selected = [s for s in of_kind(docs, "Service") if labels_match(spec.get("selector"), s["metadata"].get("labels") or {})]
    components = sorted(s["metadata"]["labels"].get("app.kubernetes.io/component") for s in selected)
    scraped = sorted(d["metadata"]["labels"].get("app.kubernetes.io/component") for d in of_kind(docs, "Deployment")
                     if (pod_template(d)[0].get("annotations") or {}).get("prometheus.io/scrape") == "true")
    ensure({"controller", "deployer"} <= set(scraped), f"the daemons' pods do not all say they serve metrics: {scraped}")
    ensure(components == scraped, f"selects the Services of {components}, not {scraped}")
    for ep in endpoints:
        ensure(ep.get("path") == "/metrics", f"endpoint path {ep.get('path')!r}")
        for s in selected:
            ensure(ep.get("port") in [p.get("name") for p in s["spec"]["ports"]],
                   f"{name_of(s)} has no port named {ep.get('port')!r}")
    deployments = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in of_kind(docs, "Deployment")}
    for s in selected:
        d = deployments[s["metadata"]["labels"]["app.kubernetes.io/component"]]
        ensure(labels_match({"matchLabels": s["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]),
               f"{name_of(s)} does not select the pods of {name_of(d)}")


def without_kind(path, kind, out):
    """Writes every document but those of `kind` (for kubernetes-validate, which has no
    schema for custom resources); fails if there was none to remove."""
    docs = load(path)
    kept = [d for d in docs if d.get("kind") != kind]
    ensure(len(kept) < len(docs), f"no {kind} rendered")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)


CHECKS = {
    "rbac-no-wildcard": check_rbac,
    "role-covers": check_role_covers,
    "hardened": check_hardened,
    "etcd-persistent": check_etcd_persistent,
    "namespace-kept": check_namespace_kept,
    "etcd-cluster": check_etcd_cluster,
    "config-secret": check_config_secret,
    "controller-env": check_controller_env,
    "workflow-env": check_workflow_env,
    "registry": check_registry,
    "network-policy": check_network_policy,
    "service-monitor": check_service_monitor,
    "without-kind": without_kind,
}


def main(argv):
    if len(argv) < 3 or argv[1] not in CHECKS:
        print(f"usage: {argv[0]} ({'|'.join(CHECKS)}) <rendered.yaml> [arguments]", file=sys.stderr)
        return 2
    try:
        CHECKS[argv[1]](*argv[2:])
    except Failed as e:
        print(e)
        return 1
    except (KeyError, TypeError, IndexError, AttributeError, yaml.YAMLError, OSError) as e:
        print(f"{type(e).__name__}: {e} (not the expected structure)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
