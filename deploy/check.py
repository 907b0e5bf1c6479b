#!/usr/bin/env python3
"""Checks deploy/ with the tools operators use (docs/kubernetes.md, "What CI checks").

  deploy/check.py [--ordo PATH] [--write]

1. Every YAML and JSON file of the repository parses.
2. `kubectl kustomize` renders every overlay of deploy/kubernetes/overlays, and the
   rendered resources validate against the Kubernetes schemas (kubernetes-validate
   --strict); custom resources (cert-manager, CloudNativePG, Prometheus Operator) are
   checked for the fields ordo relies on; every ConfigMap and Secret a pod names exists in
   the rendering or is one the operator creates (docs/kubernetes.md, "Secrets").
3. Every ordo config embedded in the rendered manifests and in the compose file passes
   `ordo config check --role ROLE`.
4. The compose file validates against the Compose Specification (check-jsonschema).
5. `promtool check rules`, `promtool test rules` and `promtool check config` pass, and the
   PrometheusRule of deploy/kubernetes/base holds exactly deploy/observability/alerts.yaml
   (--write regenerates it).
6. The Grafana dashboard is a dashboard: every panel has a query.

That every metric the alerts and the dashboard name is exported by a live node of the
right role is checked by the gateway suite (crates/cli/tests/gateway.rs, s17_metrics).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = DEPLOY / "kubernetes" / "overlays"
ALERTS = DEPLOY / "observability" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "observability" / "alerts-test.yaml"
DASHBOARD = DEPLOY / "observability" / "grafana" / "ordo.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULE_RESOURCE = DEPLOY / "kubernetes" / "base" / "prometheus-rule.yaml"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
COMPOSE_PROMETHEUS = DEPLOY / "docker" / "prometheus.yml"
ROLES = ("sequencer", "topology", "mediator", "participant", "gateway")

# Secrets the operator creates (docs/kubernetes.md, "Secrets"); the others come from
# cert-manager Certificates and CloudNativePG clusters in the rendering.
OPERATOR_SECRETS = [re.compile(p) for p in (
    r"ordo-tokens", r"ordo-(topology|mediator)-key", r"ordo-shard-key-\d+", r"ordo-backup-s3")]

# Placeholders for what the manifests take from Secrets and ConfigMaps at run time.
PLACEHOLDER_ENV = {
    "sequencer": {"ORDO_SEQUENCER_NODE_NAME": "sequencer-check",
                  "ORDO_SEQUENCER_DATABASE_URL": "postgres://check@127.0.0.1/check",
                  "ORDO_SEQUENCER_ADMIN_TOKEN": "check-token"},
    "topology": {"ORDO_TOPOLOGY_DATABASE_URL": "postgres://check@127.0.0.1/check",
                 "ORDO_TOPOLOGY_ADMIN_TOKEN": "check-token",
                 "ORDO_TOPOLOGY_SEQUENCER_ADMIN_TOKEN": "check-token"},
    "mediator": {"ORDO_MEDIATOR_DATABASE_URL": "postgres://check@127.0.0.1/check",
                 "ORDO_MEDIATOR_TOPOLOGY_MANAGER": "topology::00000000000000000000000000000000"},
    "participant": {"ORDO_PARTICIPANT_NODE_NAME": "participant-1",
                    "ORDO_PARTICIPANT_SHARD": "shard-1",
                    "ORDO_PARTICIPANT_DATABASE_URL": "postgres://check@127.0.0.1/check",
                    "ORDO_PARTICIPANT_TOPOLOGY_MANAGER": "topology::00000000000000000000000000000000",
                    "ORDO_PARTICIPANT_TOPOLOGY_ADMIN_TOKEN": "check-token",
                    "ORDO_PARTICIPANT_AUTH__SECRET": "check-secret-of-at-least-32-bytes!!"},
    "gateway": {"ORDO_GATEWAY_AUTH__SECRET": "check-secret-of-at-least-32-bytes!!"},
}

failures = []


def fail(what):
    failures.append(what)
    print(f"FAIL {what}")


def ok(what):
    print(f"ok   {what}")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def tracked_files():
    out = run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).stdout.split()
    return [ROOT / f for f in out if (ROOT / f).is_file()]


def check_parse():
    n = 0
    for f in tracked_files():
        if f.suffix in (".yaml", ".yml"):
            try:
                list(yaml.safe_load_all(f.read_text()))
            except yaml.YAMLError as e:
                fail(f"{f.relative_to(ROOT)} is not YAML: {e}")
                continue
            n += 1
        elif f.suffix == ".json":
            try:
                json.loads(f.read_text())
            except json.JSONDecodeError as e:
                fail(f"{f.relative_to(ROOT)} is not JSON: {e}")
                continue
            n += 1
    ok(f"{n} YAML and JSON files parse")


def role_of(filename):
    stem = Path(filename).stem
    return stem if stem in ROLES else None


def config_check(ordo, role, text, origin):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{role}.toml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
        env.update(PLACEHOLDER_ENV[role])
        r = run([ordo, "config", "check", "--role", role, str(path)], env=env)
        if r.returncode != 0:
            fail(f"ordo config check --role {role} ({origin}): {(r.stderr or r.stdout).strip()}")
        else:
            ok(f"ordo config check --role {role} ({origin})")


def is_core(doc):
    """A resource of Kubernetes itself (its schema is in kubernetes-validate)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "batch", "policy", "autoscaling") or group.endswith(".k8s.io")


def check_custom(doc, where):
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    name = doc["metadata"]["name"]
    need = {
        "Certificate": ["secretName", "issuerRef"],
        "Issuer": [],
        "Cluster": ["instances", "storage"],
        "ScheduledBackup": ["schedule", "cluster"],
        "ServiceMonitor": ["selector", "endpoints"],
        "PrometheusRule": ["groups"],
    }.get(kind)
    if need is None:
        fail(f"{where}: {kind}/{name} has no check")
        return
    missing = [k for k in need if k not in spec]
    if missing:
        fail(f"{where}: {kind}/{name} lacks spec.{', spec.'.join(missing)}")
    if kind == "Certificate":
        key = spec.get("privateKey", {})
        if spec.get("isCA") is not True and key.get("encoding") != "PKCS8" and "client auth" in spec.get("usages", []):
            fail(f"{where}: Certificate/{name}: ordo reads PKCS#8 keys (privateKey.encoding: PKCS8)")


def pod_specs(doc):
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "Job"):
        return [spec["template"]["spec"]]
    return []


def check_references(docs, where):
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    for d in docs:
        if d["kind"] == "Certificate":
            secrets.add(d["spec"]["secretName"])
        if d["kind"] == "Cluster":
            secrets.update({d["metadata"]["name"] + "-app", d["metadata"]["name"] + "-ca"})
    for d in docs:
        for pod in pod_specs(d):
            owner = f"{d['kind']}/{d['metadata']['name']}"
            named_cm, named_secret = set(), set()
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {})
                    if "configMapKeyRef" in ref:
                        named_cm.add(ref["configMapKeyRef"]["name"])
                    if "secretKeyRef" in ref:
                        named_secret.add(ref["secretKeyRef"]["name"])
                for e in c.get("envFrom", []):
                    if "configMapRef" in e:
                        named_cm.add(e["configMapRef"]["name"])
                    if "secretRef" in e:
                        named_secret.add(e["secretRef"]["name"])
                sc = c.get("securityContext", {})
                if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                    fail(f"{where}: {owner}: container {c['name']} must have a read-only root filesystem and no privilege escalation")
            if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
                fail(f"{where}: {owner}: pods must run as non-root")
            for v in pod.get("volumes", []):
                if "configMap" in v:
                    named_cm.add(v["configMap"]["name"])
                if "secret" in v:
                    named_secret.add(v["secret"]["secretName"])
                for s in v.get("projected", {}).get("sources", []):
                    if "secret" in s:
                        named_secret.add(s["secret"]["name"])
                    if "configMap" in s:
                        named_cm.add(s["configMap"]["name"])
            for cm in sorted(named_cm - configmaps):
                fail(f"{where}: {owner} names ConfigMap {cm}, which the rendering lacks")
            for s in sorted(named_secret - secrets):
                if not any(p.fullmatch(s) for p in OPERATOR_SECRETS):
                    fail(f"{where}: {owner} names Secret {s}, made by nothing in the rendering nor by the operator (docs/kubernetes.md)")


def check_kubernetes(ordo):
    overlays = sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        fail("no overlay under deploy/kubernetes/overlays")
    for overlay in overlays:
        where = f"overlay {overlay.name}"
        r = run(["kubectl", "kustomize", str(overlay)])
        if r.returncode != 0:
            fail(f"{where}: kubectl kustomize: {r.stderr.strip()}")
            continue
        ok(f"{where}: kubectl kustomize renders")
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(r.stdout)
            f.flush()
            v = run(["kubernetes-validate", "--strict", "--quiet", "--no-warn", f.name])
            if v.returncode != 0:
                fail(f"{where}: kubernetes-validate --strict:\n{v.stdout}{v.stderr}")
            else:
                core = [d for d in docs if is_core(d)]
                ok(f"{where}: {len(core)} Kubernetes resources validate against the schemas (kubernetes-validate --strict)")
        for d in docs:
            if not is_core(d):
                check_custom(d, where)
        check_references(docs, where)
        ok(f"{where}: every ConfigMap and Secret a pod names is accounted for")
        for d in docs:
            if d["kind"] != "ConfigMap":
                continue
            for key, text in (d.get("data") or {}).items():
                role = role_of(key) if key.endswith(".toml") else None
                if role:
                    config_check(ordo, role, text, f"{where}, ConfigMap {d['metadata']['name']}")


def check_compose(ordo):
    r = run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    if r.returncode != 0:
        fail(f"{COMPOSE.relative_to(ROOT)} against the Compose Specification:\n{r.stdout}{r.stderr}")
    else:
        ok(f"{COMPOSE.relative_to(ROOT)} validates against the Compose Specification")
    compose = yaml.safe_load(COMPOSE.read_text())
    configs = compose.get("configs", {})
    n = 0
    for name, c in configs.items():
        role = next((r for r in ROLES if name.startswith(r)), None)
        if role and "content" in c:
            config_check(ordo, role, c["content"], f"compose config {name}")
            n += 1
    if n == 0:
        fail("the compose file embeds no ordo config")


def rule_resource_text():
    rules = yaml.safe_load(ALERTS.read_text())
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ordo", "labels": {"app.kubernetes.io/part-of": "ordo"}},
        "spec": rules,
    }
    head = ("# Generated from deploy/observability/alerts.yaml by deploy/check.py --write: edit\n"
            "# that file, not this one. The same rules for the Prometheus Operator.\n")
    return head + yaml.safe_dump(resource, sort_keys=False, width=100)


def check_prometheus(write):
    for cmd, what in (
        (["promtool", "check", "rules", str(ALERTS)], "promtool check rules"),
        (["promtool", "test", "rules", str(ALERT_TESTS)], "promtool test rules"),
        (["promtool", "check", "config", str(PROMETHEUS)], "promtool check config (Kubernetes)"),
        (["promtool", "check", "config", "--syntax-only", str(COMPOSE_PROMETHEUS)], "promtool check config --syntax-only (compose)"),
    ):
        r = run(cmd)
        if r.returncode != 0:
            fail(f"{what}:\n{r.stdout}{r.stderr}")
        else:
            ok(what)
    want = rule_resource_text()
    if write:
        RULE_RESOURCE.write_text(want)
        ok(f"wrote {RULE_RESOURCE.relative_to(ROOT)}")
    elif not RULE_RESOURCE.exists() or RULE_RESOURCE.read_text() != want:
        fail(f"{RULE_RESOURCE.relative_to(ROOT)} is out of date with {ALERTS.relative_to(ROOT)}: run deploy/check.py --write")
    else:
        ok(f"{RULE_RESOURCE.relative_to(ROOT)} holds exactly {ALERTS.relative_to(ROOT)}")


def check_dashboard():
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board.get("panels", []) if p.get("type") != "row"]
    if not panels:
        fail(f"{DASHBOARD.relative_to(ROOT)} has no panel")
    for p in panels:
        if not any(t.get("expr") for t in p.get("targets", [])):
            fail(f"{DASHBOARD.relative_to(ROOT)}: panel {p.get('title')!r} has no query")
    ok(f"{DASHBOARD.relative_to(ROOT)}: {len(panels)} panels, each with a query")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ordo", default=str(ROOT / "target" / "debug" / "ordo"), help="the ordo binary")
    ap.add_argument("--write", action="store_true", help="regenerate the PrometheusRule from the alert rules")
    args = ap.parse_args()
    check_parse()
    check_kubernetes(args.ordo)
    check_compose(args.ordo)
    check_prometheus(args.write)
    check_dashboard()
    if failures:
        print(f"\n{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("\nevery deploy check passed")


if __name__ == "__main__":
    main()
