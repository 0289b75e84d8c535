"""The container files keep their promises: Dockerfile, .dockerignore and compose.yaml.

Docker is not available where the tests run, so these check structure: the image installs with
the same scripts/install.sh as CI, runs as a non-root user, has a working health check and the
documented default command; compose wires the server to Redis and keeps precompute behind a
profile. Each check fails if someone breaks the property it names.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    stages: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD / HEALTHCHECK CMD."""
    start = args.index("[")
    return json.loads(args[start:])


def test_image_is_multi_stage_and_installs_with_the_ci_script():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a slim runtime stage"
    runs = [args for stage in stages for kw, args in stage if kw == "RUN"]
    install = [r for r in runs if "scripts/install.sh" in r]
    assert install, "the image must install through scripts/install.sh, as CI does"
    assert any("VENV=" in r and "EXTRAS=" in r for r in install)
    # The runtime stage copies the environment built by the install script.
    copies = [args for kw, args in final_stage() if kw == "COPY"]
    assert any("--from=" in c and "/opt/venv" in c for c in copies)
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert 'VENV="${VENV:-' in script and 'EXTRAS="${EXTRAS-' in script


def test_cuda_variant_is_a_build_argument_with_the_gpu_extra():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text
    build_run = next(
        args for kw, args in dockerfile_stages()[0] if kw == "RUN" and "install.sh" in args
    )
    assert 'cuda) extras="gpu,s3,dask"' in build_run and 'TORCH="$VARIANT"' in build_run
    assert "faiss-gpu" in build_run and "uninstall -y faiss-cpu" in build_run


def test_runtime_runs_as_a_non_root_user():
    users = [args for kw, args in final_stage() if kw == "USER"]
    assert users, "the runtime stage needs a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    # Nothing after the last USER switches back to root.
    last_user = max(i for i, (kw, _) in enumerate(final_stage()) if kw == "USER")
    assert all(kw != "USER" for kw, _ in final_stage()[last_user + 1 :])


def test_default_command_serves_on_all_interfaces():
    cmd = [args for kw, args in final_stage() if kw == "CMD"]
    assert cmd, "the runtime stage needs a CMD"
    argv = exec_form(cmd[-1])
    assert argv[:2] == ["soundscape", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = argv[argv.index("--port") + 1]
    exposed = [args for kw, args in final_stage() if kw == "EXPOSE"]
    assert any(port in e.split() for e in exposed)
    env = " ".join(args for kw, args in final_stage() if kw == "ENV")
    assert "SOUNDSCAPE_DEMO_CACHE=" in env


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = type(self).status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status,ok", [(200, True), (503, False)])
def test_healthcheck_asks_healthz_without_curl(status, ok):
    checks = [args for kw, args in final_stage() if kw == "HEALTHCHECK"]
    assert checks, "the runtime stage needs a HEALTHCHECK"
    argv = exec_form(checks[-1])
    assert argv[0] == "python" and "curl" not in checks[-1] and "/healthz" in checks[-1]
    # Run the very command against a stand-in server on a free port.
    handler = type("Health", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = argv[-1].replace(":8000/", f":{server.server_address[1]}/")
        assert code != argv[-1], "the health check must ask the service port 8000"
        done = subprocess.run([sys.executable, *argv[1:-1], code], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is ok, done.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
        for p in patterns
        if not p.startswith("!")
    )


def test_dockerignore_keeps_environments_out_and_sources_in():
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for unwanted in (".venv", "web/node_modules", "runs", ".pytest_cache", "x/__pycache__"):
        assert _ignored(unwanted, patterns), f".dockerignore must exclude {unwanted}"
    needed = ["pyproject.toml", "constraints.txt", "scripts/install.sh", "README.md"]
    needed += ["scripts/system-packages.txt", "model", "embeddings_store", "server", "web"]
    for path in needed:
        assert not _ignored(path, patterns), f".dockerignore must not exclude {path}"


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def test_compose_server_uses_redis_and_a_shared_volume():
    spec = compose()
    services = spec["services"]
    assert {"redis", "server"} <= services.keys()
    assert "redis" in services["redis"]["image"]
    server = services["server"]
    assert "profiles" not in server, "the server starts with a plain `docker compose up`"
    assert server["environment"]["SOUNDSCAPE_REDIS_URL"] == "redis://redis:6379/0"
    assert "redis" in server["depends_on"]
    assert command(server)[:2] == ["soundscape", "serve"]
    assert any(p.endswith(":8000") for p in server["ports"])
    volumes = {v.split(":")[0]: v.split(":")[1] for v in server["volumes"]}
    assert volumes and set(volumes) <= set(spec["volumes"])
    cache = server["environment"]["SOUNDSCAPE_DEMO_CACHE"]
    assert any(cache.startswith(mount) for mount in volumes.values())


def test_compose_precompute_runs_behind_its_profile_into_the_shared_volume():
    services = compose()["services"]
    job = services["precompute"]
    assert "precompute" in job["profiles"]
    argv = command(job)
    assert argv[:2] == ["soundscape", "precompute"]
    store = argv[argv.index("--store") + 1]
    shared = {v.split(":")[0]: v.split(":")[1] for v in services["server"]["volumes"]}
    mounts = {v.split(":")[0]: v.split(":")[1] for v in job["volumes"]}
    common = set(shared.items()) & set(mounts.items())
    assert common, "precompute must write into a volume the server also mounts"
    default_store = store.split(":-", 1)[1].rstrip("}") if ":-" in store else store
    assert any(default_store.startswith(path) for _, path in common)
