"""Cross-file checks of wafleet's deployment files that no schema expresses.

    python consistency.py INFRA_DIR REPO_DIR            check, print problems, exit 1 if any
    python consistency.py --keda-test INFRA_DIR OUT     write a promtool test of the KEDA queries

Checked: every setting named in the compose file, the ConfigMap and the example Secret is one
wafleet knows (from core/src/config.rs and sim/src/config.rs) and is not empty; grace periods
outlast the drain (SHUTDOWN_TIMEOUT_SECS); probes use the HTTP port the settings give; selectors,
scale targets and kustomization entries name things that exist; images agree. Used by
infra/validate.
"""

import pathlib
import re
import sys

import yaml

ROLES = {"api", "worker", "scheduler", "migrate", "serve", "sim"}
# Files of infra/k8s that kustomization.yaml leaves out on purpose.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secret.example.yaml", "migrate-job.yaml"}

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def known_settings(repo):
    names = {"RUST_LOG", "APP_PORT"}
    for source in ("core/src/config.rs", "sim/src/config.rs"):
        names |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', (repo / source).read_text()))
    return names


def seconds(value):
    """Compose durations ("45s", "1m30s") and plain numbers, in seconds."""
    if isinstance(value, (int, float)):
        return value
    total = 0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}[unit]
    return total


def check_settings(where, env, known):
    for key, value in env.items():
        if key not in known:
            problem(where, f"unknown setting {key} (see `wafleet --help`)")
        if value is None or str(value) == "":
            problem(where, f"{key} is empty: leave it out instead (an empty value is a value)")


def check_compose(infra, known):
    compose = yaml.safe_load((infra / "docker-compose.yml").read_text())
    services = compose["services"]
    drain = None
    for name, service in services.items():
        image = str(service.get("image", ""))
        if "wafleet" not in image:
            continue
        env = service.get("environment") or {}
        check_settings(f"docker-compose.yml services.{name}.environment", env, known)
        role = (service.get("command") or ["serve"])[0]
        if role not in ROLES:
            problem(f"docker-compose.yml services.{name}", f"command {role!r} is not a wafleet role")
        drain = int(env.get("SHUTDOWN_TIMEOUT_SECS", drain or 30))
        if role in {"api", "worker", "scheduler"}:
            grace = seconds(service.get("stop_grace_period", "10s"))
            if grace <= drain:
                problem(
                    f"docker-compose.yml services.{name}",
                    f"stop_grace_period {grace:g}s must outlast SHUTDOWN_TIMEOUT_SECS={drain}",
                )
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problem(f"docker-compose.yml services.{name}", f"depends on unknown service {dependency}")


def check_k8s(infra, known):
    k8s = infra / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    listed = kustomization.get("resources", [])
    for entry in listed:
        if not (k8s / entry).is_file():
            problem("kustomization.yaml", f"lists {entry}, which does not exist")
    for path in sorted(k8s.glob("*.yaml")):
        if path.name not in listed and path.name not in NOT_IN_KUSTOMIZATION:
            problem("kustomization.yaml", f"does not list {path.name}")

    objects = []
    for path in sorted(k8s.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects += [(path.name, o) for o in load_all(path)]
    by_kind = {}
    for file, o in objects:
        by_kind.setdefault(o["kind"], []).append((file, o))

    config = {}
    for file, cm in by_kind.get("ConfigMap", []):
        check_settings(f"{file} ConfigMap/{cm['metadata']['name']}", cm.get("data", {}), known)
        config.update(cm.get("data", {}))
    secret_names = set()
    for file, secret in by_kind.get("Secret", []):
        check_settings(f"{file} Secret/{secret['metadata']['name']}", secret.get("stringData", {}), known)
        secret_names.add(secret["metadata"]["name"])
    configmap_names = {cm["metadata"]["name"] for _, cm in by_kind.get("ConfigMap", [])}
    drain = int(config.get("SHUTDOWN_TIMEOUT_SECS", 30))
    port = int(config.get("PORT", 3000))

    image_names = {i["name"]: i for i in kustomization.get("images", [])}
    workloads = by_kind.get("Deployment", []) + by_kind.get("Job", [])
    deployments = {d["metadata"]["name"]: d for _, d in by_kind.get("Deployment", [])}
    for file, workload in workloads:
        where = f"{file} {workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            check_container(where, container, pod, workload, drain, port, configmap_names, secret_names, known)
            image = container["image"]
            if workload["kind"] == "Job":
                # Applied outside the kustomization: must name the image the kustomization sets.
                for entry in image_names.values():
                    expected = f"{entry.get('newName', entry['name'])}:{entry.get('newTag', 'latest')}"
                    if image != expected:
                        problem(where, f"image {image} differs from the kustomization's {expected}")
            elif image.split(":")[0] not in image_names:
                problem(where, f"image {image} is not set by kustomization.yaml images")
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        selector = workload["spec"].get("selector", {}).get("matchLabels")
        if selector and not selector.items() <= labels.items():
            problem(where, "selector does not match the pod template's labels")

    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for kind in ("Service", "PodDisruptionBudget"):
        for file, o in by_kind.get(kind, []):
            spec = o["spec"]
            selector = spec["selector"].get("matchLabels", spec["selector"]) if kind != "Service" else spec["selector"]
            if not any(selector.items() <= labels.items() for labels in pod_labels):
                problem(f"{file} {kind}/{o['metadata']['name']}", "selector matches no Deployment's pods")

    autoscaled = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for file, o in by_kind.get(kind, []):
            target = o["spec"].get("scaleTargetRef", {}).get("name")
            autoscaled[target] = f"{file} {kind}/{o['metadata']['name']}"
            if target not in deployments:
                problem(autoscaled[target], f"scales {target}, which is no Deployment here")
    for name, deployment in deployments.items():
        if name in autoscaled and "replicas" in deployment["spec"]:
            problem(f"Deployment/{name}", f"sets replicas, which {autoscaled[name]} owns (an apply would reset it)")

    capacity = int(config.get("WORKER_CAPACITY", 5000))
    for file, scaled in by_kind.get("ScaledObject", []):
        for trigger in scaled["spec"].get("triggers", []):
            if trigger.get("name") == "demand" and float(trigger["metadata"]["threshold"]) > capacity:
                problem(f"{file} trigger demand", f"aims above WORKER_CAPACITY={capacity} sessions per worker")


def check_container(where, container, pod, workload, drain, port, configmaps, secrets, known):
    args = container.get("args") or []
    if not args or args[0] not in ROLES:
        problem(where, f"args {args} do not start with a wafleet role")
    for source in container.get("envFrom", []):
        if "configMapRef" in source and source["configMapRef"]["name"] not in configmaps:
            problem(where, f"reads ConfigMap {source['configMapRef']['name']}, which is not defined here")
        if "secretRef" in source and source["secretRef"]["name"] not in secrets:
            problem(where, f"reads Secret {source['secretRef']['name']}, unlike secret.example.yaml")
    check_settings(where, {e["name"]: e.get("value", "x") for e in container.get("env", [])}, known)
    if workload["kind"] != "Deployment":
        return
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pause:
        problem(where, f"terminationGracePeriodSeconds {grace} must outlast preStop {pause}s + drain {drain}s")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
        http = container.get(probe, {}).get("httpGet")
        if not http:
            problem(where, f"has no {probe} (HTTP GET {path})")
            continue
        if http["path"] != path:
            problem(where, f"{probe} asks {http['path']}, expected {path}")
        if ports.get(http["port"], http["port"]) != port:
            problem(where, f"{probe} port {http['port']} is not PORT={port}")


def keda_test(infra, out):
    """A promtool unit test of the ScaledObject's queries on synthetic fleet gauges."""
    scaled = load_all(infra / "k8s" / "worker-scaledobject.yaml")[0]
    queries = {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    # Per minute: none in 0-9, 3000 in 10-19, none in 20-24, a blip of 500 in 25, then none.
    unheld_minutes = "0x9 3000x9 0x4 500 0x5"
    test = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'wafleet_workers_live{instance="scheduler-1"}', "values": "3x30"},
                    {"series": 'wafleet_workers_live{instance="scheduler-2"}', "values": "3x30"},
                    {"series": 'wafleet_devices_wanted{instance="scheduler-1"}', "values": "5000x30"},
                    {"series": 'wafleet_devices_unheld{instance="scheduler-1"}', "values": unheld_minutes},
                    {"series": 'wafleet_devices_unheld{instance="scheduler-2"}', "values": unheld_minutes},
                ],
                "promql_expr_test": [
                    # One worker per 2000 wanted devices (KEDA divides by the threshold).
                    {"expr": queries["demand"], "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 5000}]},
                    # Nothing unheld: 0, so this trigger never holds the worker count up.
                    {"expr": queries["unheld"], "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0}]},
                    # Unheld for less than 2 minutes: still 0.
                    {"expr": queries["unheld"], "eval_time": "11m", "exp_samples": [{"labels": "{}", "value": 0}]},
                    # 3000 unheld for over 2 minutes: the 3 live workers and 2 more (3000 / 2000).
                    {"expr": queries["unheld"], "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 5}]},
                    # Held again: back to 0.
                    {"expr": queries["unheld"], "eval_time": "22m", "exp_samples": [{"labels": "{}", "value": 0}]},
                    # A one-minute blip does not scale.
                    {"expr": queries["unheld"], "eval_time": "25m30s", "exp_samples": [{"labels": "{}", "value": 0}]},
                ],
            }
        ],
    }
    pathlib.Path(out).write_text(yaml.safe_dump(test, sort_keys=False))


def main(argv):
    if argv[:1] == ["--keda-test"]:
        keda_test(pathlib.Path(argv[1]), argv[2])
        return 0
    infra, repo = pathlib.Path(argv[0]), pathlib.Path(argv[1])
    known = known_settings(repo)
    check_compose(infra, known)
    check_k8s(infra, known)
    for line in problems:
        print(f"ERROR {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
