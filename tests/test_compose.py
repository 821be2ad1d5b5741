"""The deployment files keep their contract: docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed and their content checked, and the setup
service's retry loop is run under /bin/sh with stand-ins for ``mmr-adapter`` and ``sleep``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)  # resolves the `<<: *anchor` merges too
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ADAPTER_SERVICES = ("api", "worker", "beat", "setup")

# An interpolation compose performs: ${VAR}, ${VAR:-default}, ${VAR:?message}; `$${` is a literal.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
SECRET_KEY = re.compile(r"TOKEN|SECRET|PASSWORD", re.IGNORECASE)


def env(service: str) -> dict[str, Any]:
    environment = SERVICES[service].get("environment") or {}
    if isinstance(environment, list):  # KEY=value form
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return dict(environment)


def command(service: str) -> list[str]:
    cmd = SERVICES[service].get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def image_tag(service: str) -> tuple[str, str]:
    name, _, tag = SERVICES[service]["image"].rpartition(":")
    return (name, tag) if name else (tag, "")


def publishes(service: str, container_port: int) -> bool:
    """Whether ``service`` publishes ``container_port`` on the host (short syntax, host side may be a variable)."""
    return any(str(p).rsplit(":", 1)[-1] == str(container_port) for p in SERVICES[service].get("ports") or ())


def healthcheck(service: str) -> str:
    test = (SERVICES[service].get("healthcheck") or {}).get("test")
    assert test, f"{service} has no healthcheck"
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:])


def condition(service: str, on: str) -> str | None:
    return ((SERVICES[service].get("depends_on") or {}).get(on) or {}).get("condition")


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, args in dockerfile():
        if keyword == "ENV":
            found.update(pair.split("=", 1) for pair in shlex.split(args))
    return found


# ------------------------------------------------------------------ services


def test_every_service_is_there() -> None:
    assert {"postgres", "hapi", "redis", *ADAPTER_SERVICES} <= set(SERVICES)


@pytest.mark.parametrize("service", ["postgres", "hapi", "redis"])
def test_third_party_images_are_pinned(service: str) -> None:
    _, tag = image_tag(service)
    assert tag and tag != "latest", f"{service}: {SERVICES[service]['image']} is not pinned"
    assert re.search(r"\d", tag), f"{service}: tag {tag!r} names no version"


def test_hapi_is_a_pinned_release() -> None:
    name, tag = image_tag("hapi")
    assert name == "hapiproject/hapi"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-\d+)?", tag), tag


def test_hapi_delivers_rest_hook_notifications_for_r4() -> None:
    hapi = env("hapi")
    assert str(hapi["hapi.fhir.subscription.resthook_enabled"]).lower() == "true"
    assert hapi["hapi.fhir.fhir_version"] == "R4"
    # setup PUTs the directory with HSA-ids (letters, digits, dashes) as logical ids.
    assert hapi["hapi.fhir.client_id_strategy"] == "ALPHANUMERIC"


def test_hapi_pages_hold_the_adapters_largest_page_and_references_stay_as_written() -> None:
    hapi = env("hapi")
    counts = [
        int(n)
        for path in (ROOT / "adapter").rglob("*.py")
        for n in re.findall(r'_count[=": ]+(\d+)', path.read_text(encoding="utf-8"))
    ]
    assert counts and int(hapi["hapi.fhir.max_page_size"]) >= max(counts)
    assert int(hapi["hapi.fhir.default_page_size"]) == 20  # the image's default, as the hapi/ fixture has it
    assert hapi["hapi.fhir.auto_create_placeholder_reference_targets"] == "false"
    assert hapi["hapi.fhir.enforce_referential_integrity_on_write"] == "true"
    assert hapi["hapi.fhir.allow_external_references"] == "false"


def test_hapi_stores_in_the_postgres_service() -> None:
    hapi, pg = env("hapi"), env("postgres")
    url = hapi["spring.datasource.url"]
    assert url == f"jdbc:postgresql://postgres:5432/{pg['POSTGRES_DB']}"
    assert hapi["spring.datasource.driverClassName"] == "org.postgresql.Driver"
    assert hapi["spring.datasource.username"] == pg["POSTGRES_USER"]
    assert hapi["spring.datasource.password"] == pg["POSTGRES_PASSWORD"]
    assert hapi["spring.jpa.properties.hibernate.dialect"] == "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect"
    assert condition("hapi", "postgres") == "service_healthy"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in SERVICES["postgres"]["volumes"])
    assert publishes("hapi", 8080)


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    cmd = command("redis")
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "everysec"
    named_volumes = set(COMPOSE.get("volumes") or {})
    mounts = [str(v).split(":") for v in SERVICES["redis"]["volumes"]]
    assert any(src in named_volumes and dst == "/data" for src, dst, *_ in mounts), mounts


def test_adapter_services_run_the_right_commands() -> None:
    assert command("api")[:1] == ["serve"] and command("api")[command("api").index("--port") + 1] == "8000"
    assert publishes("api", 8000)
    assert command("worker")[:1] == ["worker"]
    assert command("beat")[:1] == ["beat"]
    assert "mmr-adapter setup" in " ".join(command("setup"))
    assert SERVICES["setup"]["restart"] == "no"  # a one-shot: never restarted once it has exited
    for service in ("api", "worker", "beat"):
        assert SERVICES[service].get("restart") in ("unless-stopped", "always"), service


def test_adapter_services_share_one_image_and_one_environment() -> None:
    images = {SERVICES[s]["image"] for s in ADAPTER_SERVICES}
    assert len(images) == 1, images
    assert all(SERVICES[s].get("build") for s in ADAPTER_SERVICES)
    envs = [env(s) for s in ADAPTER_SERVICES]
    assert all(e == envs[0] for e in envs)
    assert envs[0] == COMPOSE["x-adapter-env"]


def test_healthchecks() -> None:
    assert "pg_isready" in healthcheck("postgres")
    assert "redis-cli ping" in healthcheck("redis")
    api = healthcheck("api")
    assert "http://localhost:8000/health" in api
    assert "curl" not in api and "wget" not in api  # neither is in python:*-slim
    assert "ping-worker" in healthcheck("worker")
    assert "check-scheduler" in healthcheck("beat")


def test_start_up_order() -> None:
    for service in ("api", "worker", "beat"):
        assert condition(service, "redis") == "service_healthy", service
    # api's /health is 200 only once HAPI answers, so a healthy api means HAPI is up.
    assert condition("setup", "api") == "service_healthy"
    if "healthcheck" not in SERVICES["hapi"]:
        assert all(condition(s, "hapi") != "service_healthy" for s in SERVICES), "hapi has no healthcheck to wait on"


def test_published_ports_bind_to_loopback_unless_told_otherwise() -> None:
    """A port published as "8000:8000" listens on every interface of the host: /notify, /metrics and HAPI."""
    published = 0
    for service, spec in SERVICES.items():
        for port in spec.get("ports") or ():
            host = re.match(r"(\$\{[^}]*\}|[^:]*):", str(port))
            match = INTERPOLATION.fullmatch(host[1]) if host else None
            assert match and match["name"] == "BIND_ADDRESS" and match["op"] == ":-" and match["arg"] == "127.0.0.1", (
                f"{service}: {port} is not published on ${{BIND_ADDRESS:-127.0.0.1}}"
            )
            published += 1
    assert published >= 2  # api and hapi


# ------------------------------------------------------------------ settings and secrets


def test_adapter_environment_points_at_the_compose_services() -> None:
    e = COMPOSE["x-adapter-env"]
    assert e["MMR_FHIR_BASE_URL"] == "http://hapi:8080/fhir"
    assert e["MMR_REDIS_URL"] == "redis://redis:6379/0"
    # HAPI, on the compose network, delivers to the api service on the port it serves on.
    assert e["MMR_PUBLIC_URL"] == "http://api:8000"


def test_webhook_token_comes_from_the_environment() -> None:
    value = COMPOSE["x-adapter-env"]["MMR_WEBHOOK_TOKEN"]
    match = INTERPOLATION.fullmatch(value)
    assert match and match["name"] == "MMR_WEBHOOK_TOKEN" and match["op"] == ":?", value


def test_the_api_serves_beyond_loopback_only_with_an_operator_token_from_the_environment() -> None:
    """`serve` refuses a non-loopback --host without MMR_OPERATOR_TOKEN; HAPI needs the api on the network."""
    from adapter.config import is_loopback

    api = command("api")
    host = api[api.index("--host") + 1] if "--host" in api else "127.0.0.1"
    assert not is_loopback(host), "HAPI reaches the api over the compose network: it must not serve on loopback"
    match = INTERPOLATION.fullmatch(str(env("api").get("MMR_OPERATOR_TOKEN")))
    assert match and match["name"] == "MMR_OPERATOR_TOKEN" and match["op"] == ":?", env("api")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_secret_is_written_into_the_file(service: str) -> None:
    for key, value in env(service).items():
        if not SECRET_KEY.search(key) or value is None:  # None: passed through from the environment
            continue
        match = INTERPOLATION.fullmatch(str(value))
        assert match, f"{service}: {key} holds a literal value"
        if re.search(r"TOKEN|SECRET", key, re.IGNORECASE):
            assert match["op"] in (None, ":?", "?"), f"{service}: {key} has a default value"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_environment_values_are_strings(service: str) -> None:
    # YAML `true` or `8080` would be a bool or int; compose wants strings (or null for pass-through).
    for key, value in env(service).items():
        assert value is None or isinstance(value, str), f"{service}: {key}={value!r} is not a string"


def test_every_mmr_variable_is_a_setting() -> None:
    prefix = Settings.model_config["env_prefix"]
    assert prefix == "MMR_"
    settings = {prefix + name.upper() for name in Settings.model_fields}
    used = {k for s in SERVICES for k in env(s) if k.startswith(prefix)}
    used |= {m["name"] for m in INTERPOLATION.finditer(COMPOSE_TEXT) if m["name"].startswith(prefix)}
    used |= set(COMPOSE["x-adapter-env"])
    assert "MMR_WEBHOOK_TOKEN" in used and "MMR_FHIR_BASE_URL" in used
    assert used <= settings, f"not settings of adapter/config.py: {sorted(used - settings)}"


def test_dockerfile_mmr_variables_are_read_by_the_adapter() -> None:
    # Path variables are read with os.environ where the files are located, not through Settings.
    settings = {"MMR_" + name.upper() for name in Settings.model_fields}
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "adapter").rglob("*.py"))
    for name in (k for k in dockerfile_env() if k.startswith("MMR_")):
        assert name in settings or f'"{name}"' in source, f"{name} is read by nothing in adapter/"


# ------------------------------------------------------------------ the setup service's retry loop


def run_setup_loop(tmp_path: Path, exit_codes: list[int]) -> tuple[int, int]:
    """Run the setup script with an mmr-adapter that exits with ``exit_codes`` in turn, then 0."""
    script = command("setup")[-1].replace("$$", "$")  # what compose hands the shell
    calls, codes = tmp_path / "calls", tmp_path / "codes"
    codes.write_text("".join(f"{code}\n" for code in exit_codes))
    stand_ins = {
        "mmr-adapter": f"n=$(($(cat {calls} 2>/dev/null || echo 0) + 1)); echo $n > {calls}\n"
        f'code=$(sed -n "${{n}}p" {codes}); exit ${{code:-0}}\n',
        "sleep": "exit 0\n",
    }
    for name, body in stand_ins.items():
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, int(calls.read_text())


def test_setup_runs_in_a_shell_loop_with_escaped_dollars() -> None:
    assert SERVICES["setup"]["entrypoint"][:2] == ["/bin/sh", "-c"]
    script = command("setup")[-1]
    # A single `$` would be interpolated by compose (to an empty string) before the shell sees it.
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), "unescaped $ in the setup script"


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs a POSIX shell")
@pytest.mark.parametrize(
    ("codes", "exit_code", "calls"),
    [
        ([], 0, 1),  # HAPI ready: one run
        ([1, 1, 1], 0, 4),  # HAPI still starting: retried until it answers
        ([1, 2], 2, 2),  # configuration error: retrying cannot help
        ([1] * 40, 1, 30),  # never ready: gives up with the last exit code
    ],
)
def test_setup_retries_until_hapi_answers(tmp_path: Path, codes: list[int], exit_code: int, calls: int) -> None:
    assert run_setup_loop(tmp_path, codes) == (exit_code, calls)


# ------------------------------------------------------------------ monitoring: prometheus and grafana


def mounts(service: str) -> dict[str, str]:
    """A service's bind mounts of repository folders, as {container path: repository path}."""
    found = {}
    for volume in SERVICES[service].get("volumes") or ():
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def in_repository(service: str, container_path: str) -> Path:
    """The repository file a service sees at ``container_path`` through its bind mounts."""
    for target, source in mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{service}: nothing of the repository is mounted at {container_path}")


def test_monitoring_images_are_pinned() -> None:
    for service in ("prometheus", "grafana"):
        _name, tag = image_tag(service)
        assert tag and tag != "latest" and re.match(r"v?\d+\.\d+\.\d+$", tag), SERVICES[service]["image"]


def test_every_repository_folder_mounted_exists() -> None:
    for service in SERVICES:
        for source in mounts(service).values():
            assert (ROOT / source).is_dir(), f"{service} mounts ./{source}, which is not in the repository"


def test_prometheus_scrapes_the_api_with_the_operator_token_and_loads_the_rules() -> None:
    script = command("prometheus")[-1]
    assert SERVICES["prometheus"]["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), "unescaped $ in prometheus' start script"
    config_file = re.search(r"--config\.file=(\S+)", script)
    assert config_file, script
    config = yaml.safe_load(in_repository("prometheus", config_file[1]).read_text(encoding="utf-8"))
    rules = [in_repository("prometheus", str(Path(config_file[1]).parent / r)) for r in config["rule_files"]]
    assert ROOT / "ops" / "prometheus" / "alerts.yml" in rules
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mmr-adapter"]  # MmrApiDown's up{job=...}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    api_port = command("api")[command("api").index("--port") + 1]
    assert [t for c in job["static_configs"] for t in c["targets"]] == [f"api:{api_port}"]
    # The token: the same required one for the api and prometheus, written where the scrape reads it.
    assert env("prometheus")["MMR_OPERATOR_TOKEN"] == COMPOSE["x-adapter-env"]["MMR_OPERATOR_TOKEN"]
    required = INTERPOLATION.fullmatch(str(env("prometheus")["MMR_OPERATOR_TOKEN"]))
    assert required and required["name"] == "MMR_OPERATOR_TOKEN" and required["op"] == ":?"
    token_file = job["authorization"]["credentials_file"]
    assert re.search(rf"MMR_OPERATOR_TOKEN[^\n]*> {re.escape(token_file)}\n", script), script
    assert condition("prometheus", "api") is not None


def test_prometheus_start_script_writes_the_token_then_runs_prometheus(tmp_path: Path) -> None:
    """The script as compose hands it to the shell, with the paths moved into ``tmp_path`` and a
    stand-in for /bin/prometheus that records its arguments."""
    script = command("prometheus")[-1].replace("$$", "$")
    token_file, ran = tmp_path / "token", tmp_path / "ran"
    fake = tmp_path / "prometheus"
    fake.write_text(f'#!/bin/sh\necho "$@" > {ran}\n')
    fake.chmod(0o755)
    script = script.replace("/tmp/mmr-operator-token", str(token_file)).replace("/bin/prometheus", str(fake))
    for value, expected in (("s3cret-operator-token", "s3cret-operator-token"), (None, "none")):
        extra = {"MMR_OPERATOR_TOKEN": value} if value else {}
        base = {k: v for k, v in os.environ.items() if k != "MMR_OPERATOR_TOKEN"}
        result = subprocess.run(["/bin/sh", "-c", script], env={**base, **extra}, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert token_file.read_text() == expected
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert "--config.file=/etc/prometheus/mmr/prometheus.yml" in ran.read_text()


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    provisioning = in_repository("grafana", "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert any(str(p).endswith(":9090") for p in SERVICES["prometheus"]["ports"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "mmr-adapter.yml").read_text())["providers"]
    dashboards = in_repository("grafana", provider["options"]["path"])
    assert dashboards == ROOT / "ops" / "grafana" / "dashboards"
    (dashboard,) = [json.loads(p.read_text(encoding="utf-8")) for p in dashboards.glob("*.json")]
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        uids = {panel["datasource"]["uid"], *(t["datasource"]["uid"] for t in panel["targets"])}
        assert uids == {source["uid"]}, panel["title"]
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert in_repository("grafana", home).is_file()
    assert condition("grafana", "prometheus") is not None


# ------------------------------------------------------------------ image


def test_dockerfile_base_user_and_entrypoint() -> None:
    instructions = dockerfile()
    build_args = dict(v.split("=", 1) for k, v in instructions if k == "ARG" and "=" in v)
    base = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m[1]], next(v for k, v in instructions if k == "FROM"))
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    users = [v for k, v in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert ("ENTRYPOINT", '["mmr-adapter"]') in instructions


def test_dockerfile_ships_mappings_and_profiles_where_the_adapter_looks() -> None:
    instructions = dockerfile()
    workdir = next(v for k, v in instructions if k == "WORKDIR")
    copies = {}
    for keyword, args in instructions:
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, dest = shlex.split(args)
            for src in sources:
                copies[src.rstrip("/")] = os.path.normpath(os.path.join(workdir, dest))
    for folder in ("adapter", "mappings", "profiles"):
        assert copies.get(folder) == f"{workdir}/{folder}", f"{folder}/ is not copied to {workdir}/{folder}"
    assert dockerfile_env()["MMR_MAPPINGS_DIR"] == copies["mappings"]
    assert dockerfile_env()["MMR_PROFILES_DIR"] == copies["profiles"]
    # Editable install: adapter/ stays beside mappings/ and profiles/, as in a checkout.
    assert any(k == "RUN" and re.search(r"pip install .*-e \.", v) for k, v in instructions)


def test_dockerignore_keeps_secrets_out_and_the_code_in() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert ".env" in patterns and ".git" in patterns
    for needed in ("adapter", "mappings", "profiles", "pyproject.toml", "README.md"):
        assert needed not in patterns and f"{needed}/" not in patterns, f"{needed} would be left out of the image"


MERGE = "tag:yaml.org,2002:merge"  # `<<: *anchor`


class _UniqueKeys(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.tag != MERGE]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"written twice: {twice}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_no_key_is_written_twice_in_one_mapping() -> None:
    """PyYAML, like compose's own parser in some versions, silently keeps the last of two equal keys:
    a setting written twice would lose its first, argued value without a word."""
    yaml.load(COMPOSE_TEXT, Loader=_UniqueKeys)
    with pytest.raises(yaml.constructor.ConstructorError, match="MMR_X"):
        yaml.load("a: &x\n  MMR_X: 1\n  MMR_X:\n", Loader=_UniqueKeys)
