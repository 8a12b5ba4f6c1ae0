"""The deployment files and the release packaging, checked without a Docker engine (run by
`cargo xtask test`; none runs on the CI machine):

1. docker/compose.yaml parses, and its services, health checks, volume and environment agree with
   the Dockerfile and with Latch's configuration keys;
2. docker/Dockerfile is multi-stage, builds `--locked`, runs as a non-root user, and its binary
   path, health check, config folder and port agree with the build and with `latch --help`;
3. the container's configuration (its ENV plus compose's environment) really starts `latch`
   here, outside a container, against the test Postgres and Redis, and `latch healthcheck` passes;
4. `cargo xtask release --profile dev` packages a tarball with the binary, README, config and
   changelog, its SHA-256 file verifies, and the packaged binary reports this commit.

Needs LATCH_BIN (a built latch) and CARGO; DATABASE_URL / REDIS_URL for part 3.
"""

import hashlib
import os
import pathlib
import re
import shlex
import socket
import subprocess
import tarfile
import tempfile
import time
import tomllib
import urllib.request

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CI = os.environ.get("CI") in ("true", "1")


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo xtask test`")
    return value


def dockerfile():
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage():
    steps = dockerfile()
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    return steps[last_from:]


def exec_form(args):
    assert args.startswith("["), f"exec form expected: {args}"
    import json

    return json.loads(args)


def config_keys():
    """Every dotted key of config/default.toml, tables included."""
    keys = set()

    def walk(prefix, table):
        for k, v in table.items():
            keys.add(prefix + k)
            if isinstance(v, dict):
                walk(prefix + k + ".", v)

    walk("", tomllib.loads((ROOT / "config" / "default.toml").read_text()))
    return keys


def test_compose_stack_is_complete_and_consistent():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"latch", "postgres", "redis"}
    for name, svc in services.items():
        assert svc["healthcheck"]["test"], f"{name} has a health check"
    latch = services["latch"]
    assert latch["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # The named volume exists and holds Postgres's data.
    assert "pgdata" in compose["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    # The build points at this repository's Dockerfile.
    context = (COMPOSE.parent / latch["build"]["context"]).resolve()
    assert (context / "Cargo.toml").exists() and context == ROOT
    assert (context / latch["build"]["dockerfile"]).resolve() == DOCKERFILE
    # The health check is the image's own binary.
    assert latch["healthcheck"]["test"] == ["CMD", "/usr/local/bin/latch", "healthcheck"]
    # Every LATCH__ variable names a real configuration key; the services are reachable by name.
    keys = config_keys()
    for var in latch["environment"]:
        if var.startswith("LATCH__"):
            parts = var[len("LATCH__"):].lower().split("__")
            dotted = ".".join(parts)
            assert dotted in keys or ".".join(parts[:-1]) in keys, f"{var} is not a config key"
    e = latch["environment"]
    assert e["LATCH_ENV"] == "production"
    assert "@postgres:5432/" in e["DATABASE_URL"] and e["REDIS_URL"] == "redis://redis:6379"
    assert e["LATCH__SERVER__BEHIND_TLS_PROXY"] == "true", "production needs TLS or a proxy"
    assert latch["ports"] == ["8080:8080"]


def test_dockerfile_builds_locked_and_runs_unprivileged():
    steps = dockerfile()
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) >= 2 and " AS build" in froms[0], "multi-stage"
    runs = " ".join(a for w, a in steps if w == "RUN")
    bins = tomllib.loads((ROOT / "crates/server/Cargo.toml").read_text())["bin"]
    bin_name = bins[0]["name"]
    assert f"cargo build --release --locked --bin {bin_name}" in runs
    assert f"target/release/{bin_name} /out/usr/local/bin/latch" in runs
    final = final_stage()
    copies = [a for w, a in final if w == "COPY"]
    assert any(c.endswith("/out/usr/local/bin/latch /usr/local/bin/latch") for c in copies)
    # Only the binary, the config and the data folder come into the final image.
    assert len(copies) == 3, copies
    user = [a for w, a in final if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root"), "non-root"
    health = [a for w, a in final if w == "HEALTHCHECK"][0]
    cmd = exec_form(health[health.index("CMD") + 3 :].strip())
    assert cmd == ["/usr/local/bin/latch", "healthcheck"]
    assert exec_form([a for w, a in final if w == "ENTRYPOINT"][0]) == ["/usr/local/bin/latch"]
    envs = " ".join(a for w, a in final if w == "ENV")
    assert "LATCH_ENV=production" in envs
    assert "LATCH_CONFIG_DIR=/etc/latch/config" in envs
    assert "config/production.toml /out/etc/latch/config/production.toml" in runs
    listen = re.search(r"LATCH__SERVER__LISTEN=0\.0\.0\.0:(\d+)", envs).group(1)
    assert [a for w, a in final if w == "EXPOSE"] == [listen]
    # The subcommand the health check runs exists.
    help_text = subprocess.run([env("LATCH_BIN"), "--help"], capture_output=True, text=True).stdout
    assert re.search(r"^\s+healthcheck\s", help_text, re.M), help_text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_container_configuration_starts_latch_here():
    database, redis = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not (database and redis):
        if CI:
            pytest.fail("DATABASE_URL and REDIS_URL are required with CI=true")
        pytest.skip("SKIPPED (no Postgres/Redis: set DATABASE_URL and REDIS_URL)")
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["latch"]["environment"]
    port = free_port()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH")}
    for w, a in final_stage():
        if w == "ENV":
            for assignment in shlex.split(a):
                k, _, v = assignment.partition("=")
                run_env[k] = v
    for k, v in compose.items():
        run_env[k] = str(v)
    key = subprocess.run([env("LATCH_BIN"), "keys", "generate"], capture_output=True, text=True)
    ring = re.search(r"^LATCH__KEYS__RING__\w+=(\S+)$", key.stdout, re.M).group(1)
    run_env.update(
        {
            # What the image has at /etc/latch/config, and what compose would resolve.
            "LATCH_CONFIG_DIR": str(ROOT / "config"),
            "LATCH__KEYS__RING__K1": ring,
            "DATABASE_URL": database,
            "REDIS_URL": redis,
            "LATCH__SERVER__LISTEN": f"127.0.0.1:{port}",
            "LATCH__SERVER__TRUSTED_PROXIES": "127.0.0.1",
            "LATCH__RATELIMIT__PREFIX": f"latch:rl:ops-{os.getpid()}:",
        }
    )
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen(
            [env("LATCH_BIN")], cwd=work, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            deadline = time.time() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        import json

                        ready = json.load(r)
                        break
                except OSError:
                    assert server.poll() is None, server.stderr.read().decode()
                    assert time.time() < deadline, "latch did not become ready"
                    time.sleep(0.2)
            assert ready["status"] == "ready"
            assert ready["checks"]["database"]["ok"] and ready["checks"]["redis"]["ok"]
            check = subprocess.run(
                [env("LATCH_BIN"), "healthcheck"], cwd=work, env=run_env, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr
        finally:
            server.terminate()
            out, err = server.communicate(timeout=30)
        assert server.returncode == 0, err.decode()
        # Production logs are JSON lines, and no first project was made.
        lines = [l for l in err.decode().splitlines() if l.strip()]
        assert lines and all(l.startswith("{") for l in lines), lines[:3]
        assert b"project_id" not in out


def test_release_packaging_on_a_debug_build():
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    subject = subprocess.run(
        ["git", "log", "-1", "--pretty=format:%s"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [env("CARGO"), "xtask", "release", "--profile", "dev", "--out", out],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        tarballs = list(pathlib.Path(out).glob("latch-*.tar.gz"))
        assert len(tarballs) == 1, list(pathlib.Path(out).iterdir())
        tarball = tarballs[0]
        assert head in tarball.name
        expected, name = (tarball.parent / (tarball.name + ".sha256")).read_text().split()
        assert name == tarball.name
        assert hashlib.sha256(tarball.read_bytes()).hexdigest() == expected
        top = tarball.name[: -len(".tar.gz")]
        with tarfile.open(tarball) as t:
            names = set(t.getnames())
            for f in ["bin/latch", "README.md", "CHANGELOG.md", "config/default.toml", "config/production.toml"]:
                assert f"{top}/{f}" in names, names
            assert t.getmember(f"{top}/bin/latch").mode & 0o111, "executable"
            t.extractall(out, filter="data")
        version = subprocess.run(
            [f"{out}/{top}/bin/latch", "--version"], capture_output=True, text=True
        ).stdout
        assert f"({head})" in version, version
        changelog = pathlib.Path(out, top, "CHANGELOG.md").read_text()
        assert subject in changelog and head[:7] in changelog
