"""Offline checks of deploy/ (there is no cluster here): the KubeRay manifests parse, their
Serve config passes Ray's own schema and names Parley's application builder, and their Parley
config passes Parley's checker and fits the pods it is given."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from parley.config import parse

pytest.importorskip("ray.serve")

from parley.server.ray_serve import deployment_options  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _documents(name: str) -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    return {d["kind"]: d for d in docs}


def _quantity(value: str | int) -> float:
    return float(str(value))


@pytest.mark.parametrize("name", ["rayservice-cpu.yaml", "rayservice-gpu.yaml"])
def test_rayservice_manifest(name: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    docs = _documents(name)
    service, config_map = docs["RayService"], docs["ConfigMap"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = ServeDeploySchema.model_validate(
        yaml.safe_load(service["spec"]["serveConfigV2"])
    )
    (app,) = serve_config.applications
    module_name, attr = app.import_path.split(":")
    assert callable(getattr(importlib.import_module(module_name), attr))
    toml_name = Path(app.args["config"]).name
    config = parse(tomllib.loads(config_map["data"][toml_name]), name)
    options = deployment_options(config)
    assert options["autoscaling_config"]["max_replicas"] >= 1

    cluster = service["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # replicas on workers only
    mounts = {m["mountPath"] for m in head["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert str(Path(app.args["config"]).parent) in mounts
    for group in cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > config.ray.drain_timeout_s
        limits = pod["containers"][0]["resources"]["limits"]
        assert _quantity(limits["cpu"]) >= config.ray.num_cpus  # a pod holds a replica
        assert _quantity(limits.get("nvidia.com/gpu", 0)) >= config.ray.num_gpus
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert str(Path(app.args["config"]).parent) in mounts
