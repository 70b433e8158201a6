"""The container side without a Docker engine: deploy/docker-compose.yml, the
Dockerfile and .dockerignore, checked against the repository and the package
metadata. The image build and `docker compose up` themselves run on a machine
with Docker (see docs/operations.md)."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
LOBBYWATCH_IMAGE = "lobbywatch:local"


# ----------------------------------------------------------------- compose


def test_compose_has_the_whole_stack() -> None:
    assert {"mosquitto", "collector", "simulator", "prometheus", "alertmanager", "grafana"} <= set(
        SERVICES
    )


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of bind mounts; named volumes are skipped."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                out.append((vol["source"], vol["target"]))
            continue
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_path_exists(name: str) -> None:
    service = SERVICES[name]
    for source, _ in _bind_mounts(service):
        assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    for vol in service.get("volumes", []):
        if isinstance(vol, str) and not vol.split(":")[0].startswith((".", "/")):
            assert vol.split(":")[0] in COMPOSE["volumes"], f"{name}: undeclared volume {vol}"
    for dep in service.get("depends_on", {}):
        assert dep in SERVICES, f"{name} depends on unknown service {dep}"


def test_build_context_and_dockerfile() -> None:
    builds = [s["build"] for s in SERVICES.values() if "build" in s]
    assert builds, "one service must build the lobbywatch image"
    for build in builds:
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
    users = [n for n, s in SERVICES.items() if s.get("image") == LOBBYWATCH_IMAGE]
    assert {"collector", "simulator"} <= set(users)


def _cli_help(words: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lobbywatch.cli", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert out.returncode == 0, f"`lobbywatch {' '.join(words)}` does not exist: {out.stderr}"
    return out.stdout


def _check_lobbywatch_command(argv: list[str]) -> None:
    """The subcommand exists and accepts every --option used."""
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    help_text = _cli_help(words)
    for arg in argv:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            assert re.search(rf"{re.escape(option)}\b", help_text), (
                f"`lobbywatch {' '.join(words)}` has no option {option}"
            )


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if s.get("image") == LOBBYWATCH_IMAGE)
)
def test_lobbywatch_service_commands_exist(name: str) -> None:
    service = SERVICES[name]
    _check_lobbywatch_command([str(a) for a in service["command"]])
    if "entrypoint" in service:
        # A wrapper must still hand the command to lobbywatch unchanged.
        assert 'exec lobbywatch "$$@"' in " ".join(service["entrypoint"])


def test_collector_config_is_valid_and_matches_compose() -> None:
    from lobbywatch.server.config import load_server_config

    collector = SERVICES["collector"]
    mounts = dict(_bind_mounts(collector))
    config_path = collector["command"][collector["command"].index("--config") + 1]
    host_path = next(src for src, dst in mounts.items() if dst == config_path)
    cfg = load_server_config(DEPLOY / host_path)
    assert cfg.mqtt.host in SERVICES
    assert cfg.http.host == "0.0.0.0" and cfg.http.port == 8080
    # Its password file is on a volume mounted into the collector.
    volume_targets = [v.split(":")[1] for v in collector["volumes"]]
    assert cfg.mqtt.password_file is not None
    assert any(str(cfg.mqtt.password_file).startswith(t + "/") for t in volume_targets)
    for sink in cfg.notify.sinks.values():
        if sink.type == "alertmanager":
            assert urlparse(sink.url).hostname in SERVICES
    # Prometheus scrapes the collector where it listens.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "lobbywatch-collector"]
    assert f"collector:{cfg.http.port}" in job["static_configs"][0]["targets"]
    # and the image's health check probes the same port.
    env = collector.get("environment", {})
    assert urlparse(env["LOBBYWATCH_HEALTHCHECK_URL"]).port == cfg.http.port


def test_grafana_datasource_points_at_the_prometheus_service() -> None:
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    url = urlparse(ds["datasources"][0]["url"])
    assert url.hostname in SERVICES and url.hostname == "prometheus"
    mounts = dict(_bind_mounts(SERVICES["grafana"]))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_prometheus_and_alertmanager_mounts_match_their_command_lines() -> None:
    prom = SERVICES["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert dict(_bind_mounts(prom))["./prometheus"] == "/etc/prometheus"
    am = SERVICES["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert dict(_bind_mounts(am))["./alertmanager"] == "/etc/alertmanager"
    # The *_file paths in alertmanager.yml resolve inside that mount.
    text = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    for path in re.findall(r"_file:\s*(\S+)", text):
        assert path.startswith("/etc/alertmanager/secrets/"), path


def test_published_ports_are_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


PROD_BROKER = REPO / "firmware_config" / "mosquitto" / "mosquitto.conf"
PROD_ACL = REPO / "firmware_config" / "mosquitto" / "acl.template"
DEMO_BROKER = DEPLOY / "mosquitto" / "mosquitto.conf"
# Settings that make the broker safe; the demo may differ only in listeners,
# TLS files, persistence paths and logging.
BROKER_SECURITY_KEYS = {
    "per_listener_settings",
    "allow_anonymous",
    "message_size_limit",
    "max_keepalive",
    "max_inflight_messages",
    "max_queued_messages",
    "persistent_client_expiration",
}


def _mosquitto_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value.strip())
    return out


def test_demo_broker_keeps_the_production_security_settings() -> None:
    assert PROD_BROKER.is_file() and PROD_ACL.is_file(), "written by the edge agent (issue 3)"
    prod, demo = _mosquitto_settings(PROD_BROKER), _mosquitto_settings(DEMO_BROKER)
    for key in BROKER_SECURITY_KEYS:
        assert demo.get(key) == prod.get(key), key
    assert demo["allow_anonymous"] == ["false"]
    # The files it names come from the volume the credentials service fills.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["mosquitto"]["volumes"]}
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    auth_volume = next(src for dst, src in mounts.items() if dst == "/mosquitto/auth")
    creds = {v.split(":")[0]: v.split(":")[1] for v in SERVICES["mqtt-credentials"]["volumes"]}
    assert creds[auth_volume] == "/broker"
    assert demo["password_file"] == ["/mosquitto/auth/passwd"]
    assert demo["acl_file"] == ["/mosquitto/auth/acl"]
    assert creds["../firmware_config/mosquitto/acl.template"] == "/input/acl"


def _mqtt_connect(port: int, user: str | None, password: str | None) -> Any:
    """A connected paho client, or the failure reason as a string."""
    import threading

    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    if result["reason"].is_failure:
        client.loop_stop()
        client.disconnect()
        return str(result["reason"])
    return client


@pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None,
    reason="mosquitto not installed",
)
def test_demo_broker_credentials_and_acl_with_a_real_broker(tmp_path: Path) -> None:
    # Run the compose credentials script and a broker with the demo config
    # (paths and port moved into tmp_path), then check who may do what.
    import queue

    from conftest import Broker, free_port

    # The broker runs as the test's user (`user root` below stops a
    # root-started mosquitto from switching to a user that cannot enter
    # pytest's private tmp folders); ownership in the container is the
    # script's default, mosquitto:mosquitto.
    me = f"{os.getuid()}:{os.getgid()}"
    env = {
        **os.environ,
        "BROKER_DIR": str(tmp_path / "broker"),
        "CLIENTS_DIR": str(tmp_path / "clients"),
        "ACL_IN": str(PROD_ACL),
        "BROKER_OWNER": me,
        "CLIENT_OWNER": me,
    }
    script = DEPLOY / "mosquitto" / "demo-credentials.sh"
    for _ in range(2):  # idempotent: the second run keeps the passwords
        out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        passwords = {
            u: (tmp_path / "clients" / f"{u}.password").read_text()
            for u in ("collector", "simulator")
        }
        if _ == 0:
            first = passwords
    assert passwords == first and all(len(p) >= 32 for p in passwords.values())
    assert "topic write lobbywatch/v1/#" in (tmp_path / "broker" / "acl").read_text()

    port = free_port()
    conf = DEMO_BROKER.read_text()
    conf = conf.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
    conf = conf.replace("/mosquitto/auth/", f"{tmp_path / 'broker'}/")
    conf = conf.replace("persistence true", "persistence false")
    conf = conf.replace("persistence_location /mosquitto/data/\n", "")
    conf = conf.replace("log_dest stdout", "log_dest stderr")
    if os.getuid() == 0:
        conf += "user root\n"
    (tmp_path / "demo.conf").write_text(conf)
    broker = Broker(port=port, config_path=tmp_path / "demo.conf")
    broker.start()
    try:
        assert isinstance(_mqtt_connect(port, None, None), str), "anonymous accepted"
        assert isinstance(_mqtt_connect(port, "collector", "wrong"), str), "bad password"
        collector = _mqtt_connect(port, "collector", passwords["collector"])
        simulator = _mqtt_connect(port, "simulator", passwords["simulator"])
        assert not isinstance(collector, str), collector
        assert not isinstance(simulator, str), simulator
        got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        collector.on_message = lambda c, u, m: got.put((m.topic, m.payload))
        collector.subscribe("lobbywatch/v1/#", qos=1)
        time.sleep(0.5)
        # The simulator (standing in for edge boxes) may write; the collector
        # receives it.
        simulator.publish(
            "lobbywatch/v1/sim-b0000/cam1/zones/waiting", b"{}", qos=1
        ).wait_for_publish(5)
        assert got.get(timeout=5)[0] == "lobbywatch/v1/sim-b0000/cam1/zones/waiting"
        # The collector's account writes nothing: the broker drops it.
        collector.publish("lobbywatch/v1/sim-b0000/cam1/zones/waiting", b"x", qos=1)
        with pytest.raises(queue.Empty):
            got.get(timeout=1.5)
        for c in (collector, simulator):
            c.loop_stop()
            c.disconnect()
    finally:
        broker.stop()


# -------------------------------------------------------------- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    lines: list[str] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not buf:
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    out = []
    for line in lines:
        op, _, args = line.partition(" ")
        out.append((op.upper(), args.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


def _arg_defaults() -> dict[str, str]:
    out = {}
    for op, args in _instructions():
        if op == "ARG" and "=" in args:
            k, v = args.split("=", 1)
            out[k] = v.strip('"')
    return out


def _exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form: {args}"
    return list(yaml.safe_load(args))


def test_dockerfile_is_multi_stage_on_slim_python_matching_requires_python() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage build"
    defaults = _arg_defaults()
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        m = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", image)
        assert m, f"base image {image} is not a slim python image"
        assert m.group(1) + ".0" in SpecifierSet(PYPROJECT["project"]["requires-python"])
        assert m.group(1) == "3.11", "the version the project is developed and tested on"


def test_dockerfile_copies_what_the_package_build_needs() -> None:
    copied: set[str] = set()
    for op, args in _stages()[0]:
        if op == "COPY" and "--from" not in args:
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                copied.add(src.rstrip("/"))
    package_dirs = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied, f"not copied: {package_dirs - copied}"
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    # .dockerignore must not hide any of it from the build context.
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and p[0] != "#"
    ]
    for src in copied:
        for pat in patterns:
            assert not fnmatch.fnmatch(src, pat.removeprefix("**/")), f"{src} ignored by {pat}"


def test_dockerignore_keeps_weights_secrets_and_local_state_out() -> None:
    patterns = {p.strip() for p in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "models/weights", "*.onnx", "**/secrets", "tests"} <= patterns


def test_runtime_stage_non_root_healthcheck_and_entrypoint() -> None:
    runtime = _stages()[-1]
    ops = dict((op, args) for op, args in runtime)  # last of each instruction wins
    user = ops["USER"].split(":")[0]
    assert user not in {"root", "0"}, "runs as root"
    assert "HEALTHCHECK" in ops
    health = _exec_form(ops["HEALTHCHECK"].split("CMD", 1)[1].strip())
    assert health[0] == "python"
    assert "LOBBYWATCH_HEALTHCHECK_URL" in " ".join(health)
    entry = _exec_form(ops["ENTRYPOINT"])
    assert entry == ["lobbywatch"]
    assert entry[0] in PYPROJECT["project"]["scripts"]
    _check_lobbywatch_command(_exec_form(ops["CMD"]))
    # The other role the same image serves.
    _check_lobbywatch_command(["edge", "run", "--config", "x"])


def test_dockerfile_pulls_and_verifies_the_model_at_build_time() -> None:
    runs = " ".join(args for op, args in _stages()[0] if op == "RUN")
    # `model pull` without a name fetches every catalogue model; each is verified.
    m = re.search(r"lobbywatch model pull --dest (\S+)", runs)
    assert m, "the models are fetched with `lobbywatch model pull` at build time"
    (dest,) = m.groups()
    from lobbywatch.models.registry import load_catalogue

    for name in load_catalogue():
        assert re.search(rf"lobbywatch model verify {name}\b", runs), name
    envs = " ".join(args for op, args in _stages()[-1] if op == "ENV")
    assert f"LOBBYWATCH_MODEL_DIR={dest}" in envs, "runtime resolves the weights it pulled"
    copies = [args for op, args in _stages()[-1] if op == "COPY"]
    assert any(dest.startswith(shlex.split(c)[-1]) for c in copies if "--from=build" in c)
    _check_lobbywatch_command(["model", "pull", "--dest", dest, "--from", "x"])


def test_dockerfile_model_steps_work_against_a_mirror(tmp_path: Path) -> None:
    # Run the Dockerfile's model commands for real, with the shared mirror as
    # MODEL_SOURCE and a temporary --dest: the sha256 check and the resolver
    # lookup through LOBBYWATCH_MODEL_DIR are exercised exactly as in the build.
    mirror = Path(os.environ.get("LOBBYWATCH_SHARED", REPO.parent / "shared")) / "models"
    if not (mirror / "yolox_nano.onnx").is_file():
        pytest.skip(f"no model mirror at {mirror}")
    cli = [sys.executable, "-m", "lobbywatch.cli"]
    dest = tmp_path / "models"
    pull = subprocess.run(
        [*cli, "model", "pull", "yolox_nano", "--dest", str(dest), "--from", str(mirror)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert "sha256 verified" in pull.stdout
    verify = subprocess.run(
        [*cli, "model", "verify", "yolox_nano"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOBBYWATCH_MODEL_DIR": str(dest)},
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert str(dest) in verify.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_demo_credentials_script_is_valid_shell() -> None:
    script = DEPLOY / "mosquitto" / "demo-credentials.sh"
    out = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
