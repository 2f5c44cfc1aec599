#!/usr/bin/env python3
"""Validates botmedia's deployment artifacts: the kustomize base and the Dockerfile.

    scripts/deploy/validate.sh                       # the venv, then this script
    validate.py [--base DIR] [--dockerfile FILE] [--repo DIR] [--kubernetes-version X.Y]

1. Schemas: every resource of the kustomize base (rendered as `kubectl apply -k` would:
   the kustomization's namespace and images applied) is validated against the JSON schemas
   of a Kubernetes release shipped by the kubernetes-validate package (its newest unless
   --kubernetes-version), in strict mode: an unknown or misspelt field fails.
2. Lint, as an operator's review: the kustomization lists every file of the folder and
   only existing ones; selectors match the pod labels; Services, probes and ingress
   backends name ports that exist; there is a per-instance Service and ingress path for
   every replica ordinal, and the callback URLs point at them; the termination grace period
   covers the drain; CPU is requested in whole cores with max_calls sized to it; every
   BOTMEDIA_* variable set is one botmedia reads (a "BOTMEDIA_..." literal in src/ or
   crates/*/src/); the pod is non-root with a read-only root filesystem and no capabilities.
3. The Dockerfile: multi-stage, a Debian *-slim runtime stage, a non-root USER, only the
   binary (and certificates) copied into it.

Prints one line per problem and exits 1 if there is any, 0 otherwise (2: usage, or the
schemas package is missing).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

try:
    import yaml
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError as e:  # pragma: no cover - the venv of validate.sh has both
    print(f"deploy: {e}: run scripts/deploy/validate.sh, which installs what this needs",
          file=sys.stderr)
    sys.exit(2)

REPO = Path(__file__).resolve().parents[2]

# `botmedia load` measured 88 calls per core at the default encoder settings, Opus 64 kb/s,
# pipeline and network together (README, "Performance"); max_calls above cores x this is more
# than the CPU given can carry.
CALLS_PER_CORE_MEASURED = 88
# botmedia serve's defaults (crates/cli/src/serve/config.rs).
DEFAULT_DRAIN_GRACE = 30
DEFAULT_HANGUP_TIMEOUT = 10
DEFAULT_API_LISTEN = "127.0.0.1:9450"
# The label the StatefulSet controller puts on each pod, valued with the pod's name.
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# The keys of a kustomization this script renders; any other would change the output in a
# way the checks below do not see, so it is refused rather than ignored.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "metadata", "namespace", "resources", "images"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
    "PriorityClass", "IngressClass", "CustomResourceDefinition", "RuntimeClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}


class Report:
    """The problems found, each with where it is."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def kn(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


# ------------------------------------------------------------------------------------------
# Rendering the kustomize base
# ------------------------------------------------------------------------------------------

def load_base(base: Path, report: Report) -> list[tuple[str, dict]]:
    """The base's resources as (file name, document), with namespace and images applied."""
    kfile = next((base / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                  if (base / n).is_file()), None)
    if kfile is None:
        report.problem(str(base), "no kustomization.yaml")
        return []
    try:
        kust = yaml.safe_load(kfile.read_text()) or {}
    except yaml.YAMLError as e:
        report.problem(kfile.name, f"not YAML: {e}")
        return []
    for key in sorted(set(kust) - KUSTOMIZATION_KEYS):
        report.problem(kfile.name, f"`{key}`: this check renders only "
                       f"{', '.join(sorted(KUSTOMIZATION_KEYS))}; extend validate.py "
                       "before using it, or the schemas and lint would miss its effect")
    resources = kust.get("resources") or []
    listed: set[str] = set()
    docs: list[tuple[str, dict]] = []
    for entry in resources:
        if not isinstance(entry, str) or "://" in entry or entry.startswith("github.com"):
            report.problem(kfile.name, f"resource `{entry}`: only files of this folder")
            continue
        path = (base / entry)
        if not path.is_file():
            report.problem(kfile.name, f"resource `{entry}` does not exist (or is not a file)")
            continue
        if path.resolve().parent != base.resolve():
            report.problem(kfile.name, f"resource `{entry}` is outside the base's folder")
        if path.name in listed:
            report.problem(kfile.name, f"resource `{entry}` is listed twice")
        listed.add(path.name)
        try:
            file_docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            report.problem(entry, f"not YAML: {e}")
            continue
        if not file_docs:
            report.problem(entry, "holds no resource")
        for d in file_docs:
            if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
                report.problem(entry, "a document without kind and apiVersion")
                continue
            docs.append((entry, d))
    for f in sorted(base.iterdir()):
        if f.suffix in (".yaml", ".yml") and f.name != kfile.name and f.name not in listed:
            report.problem(kfile.name, f"{f.name} is in the folder but not in `resources`: "
                           "list it, or move it out (kubectl apply -k would skip it)")

    namespace = kust.get("namespace")
    images = {i.get("name"): i for i in (kust.get("images") or []) if isinstance(i, dict)}
    seen: set[tuple[str, str]] = set()
    for entry, d in docs:
        meta = d.setdefault("metadata", {})
        if namespace and d["kind"] not in CLUSTER_SCOPED:
            if meta.get("namespace") not in (None, namespace):
                report.problem(entry, f"{kn(d)} names namespace {meta['namespace']}, but the "
                               f"kustomization puts everything in {namespace}")
            meta["namespace"] = namespace
        key = (d["kind"], meta.get("name", ""))
        if key in seen:
            report.problem(entry, f"{kn(d)} is defined twice")
        seen.add(key)
        for c in containers(d):
            name, _, tag = (c.get("image") or "").partition(":")
            if name in images:
                img = images[name]
                c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag or 'latest')}"
    if namespace and not any(d["kind"] == "Namespace" and d["metadata"].get("name") == namespace
                             for _, d in docs):
        report.problem(kfile.name, f"namespace {namespace} is not created by any resource "
                       "(add namespace.yaml, or say in deploy/README.md that it must exist)")
    return docs


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    if doc.get("kind") == "Pod":
        return doc.get("spec") or {}
    return None


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


# ------------------------------------------------------------------------------------------
# 1. Schemas
# ------------------------------------------------------------------------------------------

def validate_schemas(docs: list[tuple[str, dict]], version: str, report: Report) -> None:
    for entry, d in docs:
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kv_utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            report.problem(entry, f"{kn(d)} is not a valid {d['kind']} of Kubernetes "
                           f"{e.version} (strict): {path}: {e.message}")
        except kv_utils.SchemaNotFoundError as e:
            report.problem(entry, f"{kn(d)}: {e.message} (a CRD's kind does not belong in "
                           "this base)")
        except kv_utils.VersionNotSupportedError as e:
            report.problem(entry, f"kubernetes-validate does not ship Kubernetes {e.version}")
            return


# ------------------------------------------------------------------------------------------
# 2. Lint
# ------------------------------------------------------------------------------------------

def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def cpu_cores(q) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(q).strip())
    if not m:
        return None
    v = float(m.group(1))
    return v / 1000 if m.group(2) else v


def memory_bytes(q) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTPE]i?|[kmu]?)", str(q).strip())
    if not m:
        return None
    units = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "m": 1e-3, "u": 1e-6}
    return float(m.group(1)) * units[m.group(2)]


def known_variables(repo: Path) -> set[str]:
    """The BOTMEDIA_* names botmedia reads: string literals in its (non-test) sources."""
    names: set[str] = set()
    roots = [repo / "src"] + sorted((repo / "crates").glob("*/src"))
    for root in roots:
        for f in root.rglob("*.rs"):
            names.update(re.findall(r'"(BOTMEDIA_[A-Z0-9_]+)"', f.read_text(errors="replace")))
    return names


def port_of(container: dict, ref) -> dict | None:
    for p in container.get("ports") or []:
        if (isinstance(ref, str) and p.get("name") == ref) or p.get("containerPort") == ref:
            return p
    return None


def listen_port(value: str) -> int | None:
    m = re.search(r":(\d+)$", value.strip())
    return int(m.group(1)) if m else None


def lint(docs: list[tuple[str, dict]], repo: Path, report: Report) -> dict:
    """The checks of an operator's review; returns facts the Dockerfile check compares."""
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for entry, d in docs:
        by_kind.setdefault(d["kind"], []).append((entry, d))

    def named(kind: str, name: str):
        return next(((e, d) for e, d in by_kind.get(kind, []) if d["metadata"].get("name") == name),
                    (None, None))

    facts: dict = {}
    statefulsets = by_kind.get("StatefulSet", [])
    if len(statefulsets) != 1:
        report.problem("kustomization.yaml", f"expected one StatefulSet (the fleet), found "
                       f"{len(statefulsets)}")
        return facts
    entry, sts = statefulsets[0]
    name = sts["metadata"]["name"]
    spec = sts.get("spec") or {}
    replicas = spec.get("replicas", 1)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    pod = template.get("spec") or {}
    where = f"{entry}: {kn(sts)}"

    if not selector:
        report.problem(where, "spec.selector.matchLabels is empty")
    elif not matches(selector, labels):
        report.problem(where, f"spec.selector.matchLabels {selector} does not match the pod "
                       f"template's labels {labels}: the StatefulSet would own no pod")

    def pod_labels(ordinal: int) -> dict:
        return {**labels, POD_NAME_LABEL: f"{name}-{ordinal}"}

    ordinals = range(replicas)

    def selects(sel: dict) -> list[int]:
        return [n for n in ordinals if matches(sel, pod_labels(n))]

    # Per-instance fields.
    if spec.get("podManagementPolicy") != "Parallel":
        report.problem(where, "podManagementPolicy should be Parallel: instances do not "
                       "depend on each other, and a scale-down should drain them together")

    # The container.
    cs = pod.get("containers") or []
    if len(cs) != 1:
        report.problem(where, f"expected one container (botmedia), found {len(cs)}")
        return facts
    c = cs[0]
    cwhere = f"{where}: container {c.get('name')}"

    env_list = c.get("env") or []
    env: dict[str, dict] = {}
    for i, e in enumerate(env_list):
        n = e.get("name")
        if n in env:
            report.problem(cwhere, f"env {n} is set twice")
        # $(NAME) expands only names defined earlier in the list (or by envFrom).
        for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(e.get("value", ""))):
            if ref not in env:
                report.problem(cwhere, f"env {n} uses $({ref}), which is not defined before it "
                               "in env (Kubernetes would leave it unexpanded)")
        env[n] = e
    from_configmaps: dict[str, tuple[str, str]] = {}
    for ef in c.get("envFrom") or []:
        ref = (ef.get("configMapRef") or {}).get("name") or (ef.get("secretRef") or {}).get("name")
        kind = "ConfigMap" if "configMapRef" in ef else "Secret"
        e2, cm = named(kind, ref)
        if cm is None:
            if not ((ef.get("configMapRef") or ef.get("secretRef") or {}).get("optional")):
                report.problem(cwhere, f"envFrom names {kind} {ref}, which the base does not "
                               "define")
            continue
        data = {**(cm.get("data") or {}), **(cm.get("stringData") or {})}
        for k, v in data.items():
            if k in env:
                report.problem(e2, f"{kn(cm)}: {k} is also set in {entry}'s env, which wins: "
                               "keep one")
            from_configmaps[k] = (e2, str(v))

    def value(var: str) -> str | None:
        if var in env and "value" in env[var]:
            return str(env[var]["value"])
        if var in from_configmaps:
            return from_configmaps[var][1]
        return None

    # Every BOTMEDIA_* variable is one botmedia reads.
    known = known_variables(repo)
    facts["known"] = known
    set_vars = [(cwhere, n) for n in env] + [(e2, k) for k, (e2, _) in from_configmaps.items()]
    for text in (c.get("command") or []) + (c.get("args") or []):
        set_vars += [(f"{cwhere}: command/args", v) for v in re.findall(r"BOTMEDIA_[A-Z0-9_]+", text)]
    for w, var in sorted(set(set_vars)):
        if var.startswith("BOTMEDIA_") and var not in known:
            report.problem(w, f"{var} is set, but botmedia reads no such variable (no "
                           f'"{var}" in src/ or crates/*/src/): a typo, or a setting not '
                           "implemented yet")

    # The instance id is the pod's name.
    inst = env.get("BOTMEDIA_INSTANCE_ID") or {}
    if (((inst.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")) != "metadata.name":
        report.problem(cwhere, "BOTMEDIA_INSTANCE_ID must come from the downward API's "
                       "metadata.name (the pod name names the instance's routes)")

    # The serve config: --config FILE, mounted from a ConfigMap.
    words = []
    for text in (c.get("command") or []) + (c.get("args") or []):
        words += shlex.split(text, comments=True) if "\n" in text or " " in text else [text]
    config_path = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--config", "-c")
                        and words[i + 1].startswith("/")), None)
    config_path = config_path or next((w.split("=", 1)[1] for w in words
                                       if w.startswith("--config=")), None)
    toml_conf: dict = {}
    if config_path is None:
        report.problem(cwhere, "no `--config FILE` in command/args: where does serve.toml come from?")
    else:
        mounts = c.get("volumeMounts") or []
        mount = max((m for m in mounts if config_path.startswith(m["mountPath"].rstrip("/") + "/")),
                    key=lambda m: len(m["mountPath"]), default=None)
        vol = next((v for v in pod.get("volumes") or [] if mount and v.get("name") == mount["name"]),
                   None)
        if mount is None or vol is None or "configMap" not in vol:
            report.problem(cwhere, f"--config {config_path} is not on a ConfigMap volume")
        else:
            key = config_path[len(mount["mountPath"].rstrip("/")) + 1:]
            for item in vol["configMap"].get("items") or []:
                if item.get("path") == key:
                    key = item["key"]
            e2, cm = named("ConfigMap", vol["configMap"].get("name"))
            text = ((cm or {}).get("data") or {}).get(key)
            if text is None:
                report.problem(cwhere, f"--config {config_path}: ConfigMap "
                               f"{vol['configMap'].get('name')} has no key {key}")
            else:
                try:
                    toml_conf = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    report.problem(e2, f"{kn(cm)}: {key} is not TOML: {e}")

    # Termination grace covers the drain.
    def seconds(var: str, key: str, default: int) -> int:
        v = value(var)
        if v is not None:
            try:
                return int(v)
            except ValueError:
                report.problem(cwhere, f"{var}={v!r} is not a whole number of seconds")
        return int(toml_conf.get(key, default))
    drain = seconds("BOTMEDIA_DRAIN_GRACE_SECONDS", "drain_grace_seconds", DEFAULT_DRAIN_GRACE)
    hangup = seconds("BOTMEDIA_HANGUP_TIMEOUT_SECONDS", "hangup_timeout_seconds",
                     DEFAULT_HANGUP_TIMEOUT)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < drain + hangup:
        report.problem(where, f"terminationGracePeriodSeconds {grace} < drain_grace_seconds "
                       f"{drain} + hangup_timeout_seconds {hangup}: the kubelet would SIGKILL "
                       "instances while they drain, dropping their calls")

    # Resources: whole cores, Guaranteed QoS, max_calls to match.
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cores = cpu_cores(req.get("cpu")) if "cpu" in req else None
    if cores is None:
        report.problem(cwhere, "resources.requests.cpu is not set (in whole cores)")
    elif cores != int(cores) or cores < 1:
        report.problem(cwhere, f"resources.requests.cpu {req['cpu']} is not a whole number of "
                       "cores: media ticks need whole cores (static CPU manager)")
    for r in ("cpu", "memory"):
        parse = cpu_cores if r == "cpu" else memory_bytes
        if r not in req or r not in lim or parse(req[r]) != parse(lim[r]):
            report.problem(cwhere, f"resources: limits.{r} must equal requests.{r} (Guaranteed "
                           "QoS, so the CPU manager can pin whole cores and nothing throttles)")
    max_calls = toml_conf.get("max_calls")
    mc = value("BOTMEDIA_MAX_CALLS")
    if mc is not None and mc.isdigit():
        max_calls = int(mc)
    if max_calls is None:
        report.problem(cwhere, "max_calls is not set in serve.toml: size it to the cores "
                       f"requested (about {CALLS_PER_CORE_MEASURED} calls per core measured)")
    elif cores and cores == int(cores) and max_calls > cores * CALLS_PER_CORE_MEASURED:
        report.problem(cwhere, f"max_calls {max_calls} is more than {int(cores)} cores carry "
                       f"(about {CALLS_PER_CORE_MEASURED} calls per core measured by "
                       "`botmedia load`)")
    ice_ports = value("BOTMEDIA_ICE_PORTS")
    if ice_ports:
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", ice_ports)
        if not m or not (1024 <= int(m.group(1)) <= int(m.group(2)) <= 65535):
            report.problem(cwhere, f"BOTMEDIA_ICE_PORTS={ice_ports!r} is not a range like "
                           "40000-40999 of unprivileged ports")
        elif max_calls and int(m.group(2)) - int(m.group(1)) + 1 < max_calls:
            report.problem(cwhere, f"BOTMEDIA_ICE_PORTS {ice_ports} has fewer ports than "
                           f"max_calls {max_calls}")

    # Listeners agree with the container ports; the API is reachable by the kubelet.
    api = value("BOTMEDIA_API_LISTEN") or (toml_conf.get("api") or {}).get("listen") \
        or DEFAULT_API_LISTEN
    if re.match(r"(127\.|localhost|\[::1\])", api):
        report.problem(cwhere, f"the API listens on {api} (loopback): the kubelet's probes "
                       "cannot reach it; set BOTMEDIA_API_LISTEN to $(HOST_IP):PORT or 0.0.0.0:PORT")
    for var, port_name, v in (("BOTMEDIA_API_LISTEN", "api", api),
                              ("BOTMEDIA_WEBHOOK_LISTEN", "webhook", value("BOTMEDIA_WEBHOOK_LISTEN")),
                              ("BOTMEDIA_MEDIA_LISTEN", "media", value("BOTMEDIA_MEDIA_LISTEN"))):
        p = port_of(c, port_name)
        if v is None:
            report.problem(cwhere, f"{var} is not set (the container port `{port_name}` "
                           "needs a listener)")
        elif p is None:
            report.problem(cwhere, f"no container port named `{port_name}` for {var}")
        elif listen_port(v) != p.get("containerPort"):
            report.problem(cwhere, f"{var}={v} but container port `{port_name}` is "
                           f"{p.get('containerPort')}")

    # Probes name ports of the container.
    for probe, path in (("startupProbe", None), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        pr = c.get(probe)
        if not pr:
            report.problem(cwhere, f"no {probe}")
            continue
        http = pr.get("httpGet")
        if not http:
            report.problem(cwhere, f"{probe} is not an httpGet probe of the API")
            continue
        if port_of(c, http.get("port")) is None:
            report.problem(cwhere, f"{probe} probes port {http.get('port')!r}, which the "
                           "container does not declare")
        if path and http.get("path") != path:
            report.problem(cwhere, f"{probe} should GET {path}, not {http.get('path')}")

    # hostNetwork: DNS, ports, one pod per node.
    if pod.get("hostNetwork"):
        if pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
            report.problem(where, "hostNetwork without dnsPolicy ClusterFirstWithHostNet: "
                           "the pods could not resolve cluster names")
        for p in c.get("ports") or []:
            if p.get("hostPort") not in (None, p.get("containerPort")):
                report.problem(cwhere, f"port {p.get('name')}: with hostNetwork hostPort must "
                               "equal containerPort")
        anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {}) \
            .get("requiredDuringSchedulingIgnoredDuringExecution") or []
        if not any(t.get("topologyKey") == "kubernetes.io/hostname"
                   and matches((t.get("labelSelector") or {}).get("matchLabels") or {}, labels)
                   and (t.get("labelSelector") or {}).get("matchLabels")
                   for t in anti):
            report.problem(where, "hostNetwork pods need a required podAntiAffinity on "
                           "kubernetes.io/hostname selecting their own labels (one per node)")
        ice = value("BOTMEDIA_ICE_ADDRESSES")
        if ice is None:
            report.problem(cwhere, "hostNetwork but BOTMEDIA_ICE_ADDRESSES is not set: ICE "
                           "should gather on the node's address (status.hostIP)")
        elif "$(" in ice:
            ref = re.search(r"\$\((\w+)\)", ice).group(1)
            fp = (((env.get(ref) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if fp not in ("status.hostIP", "status.hostIPs"):
                report.problem(cwhere, f"BOTMEDIA_ICE_ADDRESSES uses $({ref}), which is not the "
                               "downward API's status.hostIP")

    # Security.
    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        report.problem(where, "runAsNonRoot is not set")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if uid in (None, 0):
        report.problem(where, "runAsUser is not a fixed non-root uid")
    facts["uid"] = uid
    if not csc.get("readOnlyRootFilesystem"):
        report.problem(cwhere, "readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        report.problem(cwhere, "allowPrivilegeEscalation is not false")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []) \
            or (csc.get("capabilities") or {}).get("add"):
        report.problem(cwhere, "capabilities: drop ALL and add none")
    # Volumes: mounted, defined, backed by resources of the base; writable paths are volumes.
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in vols:
            report.problem(cwhere, f"volumeMount {m.get('name')} names no volume")
    for vname, v in vols.items():
        for kind, key, ref in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
            if key in v and not v[key].get("optional") and named(kind, v[key].get(ref))[1] is None:
                report.problem(where, f"volume {vname}: {kind} {v[key].get(ref)} is not in the base")
    record_dir = value("BOTMEDIA_RECORD_DIR") or (toml_conf.get("record") or {}).get("dir")
    if record_dir and not any(
            (record_dir.rstrip("/") + "/").startswith(m["mountPath"].rstrip("/") + "/")
            and not m.get("readOnly") for m in c.get("volumeMounts") or []):
        report.problem(cwhere, f"record dir {record_dir} is on no writable volume (the root "
                       "filesystem is read-only)")
    secret_file = value("BOTMEDIA_APP_SECRET_FILE")
    if value("BOTMEDIA_APP_SECRET") is not None:
        report.problem(cwhere, "BOTMEDIA_APP_SECRET is set in plain env: mount the Secret as "
                       "a file and set BOTMEDIA_APP_SECRET_FILE")
    elif secret_file is None:
        report.problem(cwhere, "BOTMEDIA_APP_SECRET_FILE is not set")
    else:
        m = next((m for m in c.get("volumeMounts") or []
                  if secret_file.startswith(m["mountPath"].rstrip("/") + "/")), None)
        v = vols.get(m["name"]) if m else None
        if not v or "secret" not in v:
            report.problem(cwhere, f"BOTMEDIA_APP_SECRET_FILE {secret_file} is not on a Secret "
                           "volume")
        else:
            key = secret_file[len(m["mountPath"].rstrip("/")) + 1:]
            _, sec = named("Secret", v["secret"].get("secretName"))
            data = {**((sec or {}).get("data") or {}), **((sec or {}).get("stringData") or {})}
            if sec is not None and key not in data:
                report.problem(cwhere, f"BOTMEDIA_APP_SECRET_FILE {secret_file}: Secret "
                               f"{v['secret'].get('secretName')} has no key {key}")

    # Services: selectors select pods, ports exist; the headless governing Service.
    services = {d["metadata"]["name"]: (e, d) for e, d in by_kind.get("Service", [])}
    gov = services.get(spec.get("serviceName"))
    if gov is None:
        report.problem(where, f"serviceName {spec.get('serviceName')!r} is not a Service of the base")
    elif (gov[1].get("spec") or {}).get("clusterIP") != "None":
        report.problem(gov[0], f"{kn(gov[1])} governs the StatefulSet but is not headless "
                       "(clusterIP: None)")
    per_instance: dict[int, str] = {}
    for sname, (e2, svc) in services.items():
        sspec = svc.get("spec") or {}
        sel = sspec.get("selector") or {}
        swhere = f"{e2}: {kn(svc)}"
        chosen = selects(sel)
        pod_name = sel.get(POD_NAME_LABEL)
        beyond = re.fullmatch(rf"{re.escape(name)}-(0|[1-9][0-9]*)", str(pod_name or ""))
        if beyond and int(beyond.group(1)) >= replicas \
                and matches(sel, {**labels, POD_NAME_LABEL: pod_name}):
            continue  # an instance being scaled away (see below)
        if not sel or not chosen:
            report.problem(swhere, f"selector {sel} selects none of the {replicas} pods of "
                           f"{kn(sts)}")
            continue
        for p in sspec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            if port_of(c, tp) is None:
                report.problem(swhere, f"port {p.get('name')}: targetPort {tp!r} is not a port "
                               "of the pods")
        if POD_NAME_LABEL in sel:
            per_instance[chosen[0]] = sname
            if not sspec.get("publishNotReadyAddresses"):
                report.problem(swhere, "a per-instance Service needs publishNotReadyAddresses: "
                               "true, or a draining (not ready) instance stops getting the "
                               "notifications of the calls it still holds")
    for n in ordinals:
        if n not in per_instance:
            report.problem("services-per-instance.yaml", f"no Service selects {name}-{n} "
                           f"({POD_NAME_LABEL}: {name}-{n}), but replicas is {replicas}")
    # (A per-instance Service of an ordinal past replicas is not a problem: it is the first
    # step of a scale-down, which keeps the routes of the removed instances while they drain.)

    # PodDisruptionBudget.
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs:
        report.problem("kustomization.yaml", "no PodDisruptionBudget for the StatefulSet")
    for e2, pdb in pdbs:
        pspec = pdb.get("spec") or {}
        if not matches((pspec.get("selector") or {}).get("matchLabels") or {}, labels) \
                or not (pspec.get("selector") or {}).get("matchLabels"):
            report.problem(e2, f"{kn(pdb)}: selector does not match the pods' labels {labels}")
        if pspec.get("maxUnavailable") not in (1, "1") and "minAvailable" not in pspec:
            report.problem(e2, f"{kn(pdb)}: maxUnavailable should be 1 (one drain at a time)")

    # Ingress: backends exist; a path per instance; the callback URLs route to them.
    routes: dict[tuple[str | None, str], tuple[str, str, str]] = {}
    for e2, ing in by_kind.get("Ingress", []):
        ispec = ing.get("spec") or {}
        tls_hosts = {h for t in ispec.get("tls") or [] for h in t.get("hosts") or []}
        for rule in ispec.get("rules") or []:
            host = rule.get("host")
            if host and host not in tls_hosts:
                report.problem(e2, f"{kn(ing)}: host {host} has no tls entry (the calling "
                               "service posts to HTTPS only)")
            for p in (rule.get("http") or {}).get("paths") or []:
                be = (p.get("backend") or {}).get("service") or {}
                sname, port = be.get("name"), be.get("port") or {}
                if sname not in services:
                    report.problem(e2, f"{kn(ing)}: path {p.get('path')} -> Service {sname}, "
                                   "which the base does not define")
                    continue
                sports = (services[sname][1].get("spec") or {}).get("ports") or []
                if not any(sp.get("name") == port.get("name") if "name" in port
                           else sp.get("port") == port.get("number") for sp in sports):
                    report.problem(e2, f"{kn(ing)}: path {p.get('path')} -> {sname} port "
                                   f"{port}, which that Service does not have")
                routes[(host, p.get("path"))] = (sname, p.get("pathType"), e2)
    if not by_kind.get("Ingress"):
        report.problem("kustomization.yaml", "no Ingress for the webhook")
    else:
        def route(url: str | None, var: str, ordinal: int | None):
            if not url:
                report.problem(cwhere, f"{var} is not set")
                return None
            u = urlsplit(url.replace("{instance}", f"{name}-{ordinal}" if ordinal is not None
                                     else "x"))
            r = routes.get((u.hostname, u.path)) or routes.get((None, u.path))
            if r is None:
                report.problem("ingress.yaml", f"no ingress rule for {u.hostname}{u.path} "
                               f"({var}{'' if ordinal is None else f' of {name}-{ordinal}'})")
            elif r[1] != "Exact":
                report.problem(r[2], f"path {u.path}: pathType {r[1]}; use Exact (a callback "
                               "path must not fall through to another instance's)")
            return r
        cb = value("BOTMEDIA_CALLBACK_URL")
        if cb and "{instance}" not in cb:
            report.problem(cwhere, "BOTMEDIA_CALLBACK_URL has no {instance}: every instance "
                           "would give the service the same callback URL")
        if cb:
            for n in ordinals:
                r = route(cb, "BOTMEDIA_CALLBACK_URL", n)
                if r and n in per_instance and r[0] != per_instance[n]:
                    report.problem(r[2], f"the callback path of {name}-{n} goes to Service "
                                   f"{r[0]}, not to its own Service {per_instance[n]}")
        shared = route(value("BOTMEDIA_SHARED_CALLBACK_URL"), "BOTMEDIA_SHARED_CALLBACK_URL", None)
        if shared:
            svc = services.get(shared[0])
            sspec = (svc[1].get("spec") or {}) if svc else {}
            if svc and len(selects(sspec.get("selector") or {})) != replicas:
                report.problem(shared[2], f"the shared callback path goes to {shared[0]}, which "
                               "does not select every instance")
            if sspec.get("publishNotReadyAddresses"):
                report.problem(svc[0], f"{kn(svc[1])} takes new calls: it must not publish "
                               "not-ready (draining, loaded) instances")
        mp = value("BOTMEDIA_PUBLIC_MP_URI")
        if mp and "{instance}" not in mp:
            report.problem(cwhere, "BOTMEDIA_PUBLIC_MP_URI has no {instance}: every instance "
                           "would publish the same mpUri")
    return facts


# ------------------------------------------------------------------------------------------
# 3. The Dockerfile
# ------------------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, buf, start = [], "", 0
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = i
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def lint_dockerfile(path: Path, facts: dict, report: Report) -> None:
    where = path.name
    try:
        text = path.read_text()
    except OSError as e:
        report.problem(where, f"cannot read: {e}")
        return
    instructions = dockerfile_instructions(text)
    args: dict[str, str] = {}
    stages: list[dict] = []
    for line, ins, rest in instructions:
        if ins == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip().strip('"')
        if ins == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)),
                           rest.split()[0] if not rest.startswith("--") else rest.split()[1])
            alias = re.search(r"\bAS\s+(\S+)", rest, re.I)
            stages.append({"line": line, "image": image, "alias": alias.group(1) if alias else None,
                           "ins": []})
        elif stages:
            stages[-1]["ins"].append((line, ins, rest))
    if len(stages) < 2:
        report.problem(where, f"{len(stages)} stage(s): build in one stage, run from another "
                       "(multi-stage), so no toolchain or source ends up in the image")
        if not stages:
            return
    final = stages[-1]
    if not re.fullmatch(r"(docker\.io/)?(library/)?debian:[\w.-]*-slim(@sha256:[0-9a-f]+)?",
                        final["image"]):
        report.problem(where, f"line {final['line']}: the runtime stage is {final['image']}, "
                       "not a Debian *-slim image")
    builders = {s["alias"] for s in stages[:-1] if s["alias"]} | {str(i) for i in range(len(stages) - 1)}
    # An optimised build: `--release`, or a profile that inherits it (`dist` in Cargo.toml).
    optimised = re.compile(r"--release\b|--profile[ =](release|dist)\b")
    if not any(ins == "RUN" and "cargo build" in rest and optimised.search(rest) and "--locked" in rest
               for s in stages[:-1] for _, ins, rest in s["ins"]):
        report.problem(where, "no `cargo build --release --locked` (or `--profile dist`) in a "
                       "builder stage")
    user = None
    for line, ins, rest in final["ins"]:
        if ins == "USER":
            user = rest.split(":")[0].strip()
        elif ins == "ADD":
            report.problem(where, f"line {line}: ADD in the runtime stage; COPY --from the "
                           "builder only the binary")
        elif ins == "COPY":
            words = rest.split()
            frm = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            srcs = [w for w in words if not w.startswith("--")][:-1]
            if frm is None or frm not in builders:
                report.problem(where, f"line {line}: COPY into the runtime stage from the build "
                               "context; the image gets only the binary from the builder")
            elif not all(s.endswith("/botmedia") or "ca-certificates" in s or s.startswith("/etc/ssl/")
                         for s in srcs):
                report.problem(where, f"line {line}: COPY {' '.join(srcs)}: only the botmedia "
                               "binary (and certificates) belong in the runtime stage")
        elif ins == "ENV":
            for var in re.findall(r"\b(BOTMEDIA_[A-Z0-9_]+)=", rest):
                if facts.get("known") is not None and var not in facts["known"]:
                    report.problem(where, f"line {line}: ENV {var}: botmedia reads no such "
                                   "variable")
        elif ins == "ENTRYPOINT" and "botmedia" not in rest:
            report.problem(where, f"line {line}: ENTRYPOINT is not botmedia")
    if user is None:
        report.problem(where, "the runtime stage sets no USER: it would run as root")
    elif user in ("0", "root"):
        report.problem(where, "the runtime stage's USER is root")
    elif facts.get("uid") is not None and user.isdigit() and int(user) != facts["uid"]:
        report.problem(where, f"USER {user} is not the pods' runAsUser {facts['uid']}")
    if not any(ins == "STOPSIGNAL" and rest.strip() in ("SIGTERM", "15") for _, ins, rest in final["ins"]):
        report.problem(where, "no STOPSIGNAL SIGTERM (botmedia drains on SIGTERM)")


# ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=REPO / "deploy" / "kubernetes",
                    help="the kustomize base (default: deploy/kubernetes)")
    ap.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile")
    ap.add_argument("--repo", type=Path, default=REPO,
                    help="where src/ and crates/ are read for the BOTMEDIA_* names")
    ap.add_argument("--kubernetes-version", default=None,
                    help="default: the newest the kubernetes-validate package ships")
    opts = ap.parse_args()
    version = opts.kubernetes_version or kv_utils.latest_version()

    report = Report()
    docs = load_base(opts.base, report)
    validate_schemas(docs, version, report)
    facts: dict = {}
    try:
        facts = lint(docs, opts.repo, report) if docs else {}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        # A document of the wrong shape (the schema problems above say which).
        report.problem(str(opts.base), f"the lint could not finish ({type(e).__name__}: {e}); "
                       "fix the problems above first")
    lint_dockerfile(opts.dockerfile, facts, report)

    for p in report.problems:
        print(f"deploy: {p}")
    if report.problems:
        print(f"deploy: {len(report.problems)} problem(s) in {opts.base} and {opts.dockerfile}")
        return 1
    print(f"deploy: {len(docs)} resources of {os.path.relpath(opts.base)} valid against the "
          f"Kubernetes {version} schemas (strict, kubernetes-validate "
          f"{kubernetes_validate.__version__}); lint clean; {opts.dockerfile.name} clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
