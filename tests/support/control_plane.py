"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

What a kopf operator meets in a cluster, minus nodes: the API server authorizes with RBAC (and the Node
authorizer), admits pods through PodSecurity (namespaces labelled ``pod-security.kubernetes.io/enforce`` are
enforced), issues ServiceAccount tokens through the TokenRequest API, and the controller manager runs the
garbage collector (ownerReferences really cascade), the namespace controller (deleting a namespace empties it),
the ServiceAccount controllers (every namespace gets its ``default`` ServiceAccount), the PVC/PV protection
controllers (a deleted claim goes once no pod on a node uses it), and the Deployment, ReplicaSet and Job
controllers. There is no scheduler and no kubelet: pods are admitted and stay ``Pending``.

Everything listens on 127.0.0.1 only, on free ports, with state in a temp dir that ``stop()`` removes. The
binaries (Kubernetes v1.34, etcd v3.6) are built from pinned Go modules by ``scripts/build-kube.sh`` into
``~/.cache/sluice`` (or ``$SLUICE_CACHE_DIR``); ``ControlPlane`` runs the script, which builds on first use
(minutes, needs Go >= 1.24) and afterwards only checks the versions.

It is test support, not part of the ``sluice_local`` runtime: the tests get it from the ``control_plane`` fixture
(``tests/conftest.py``). Start one by hand, from the repository's root::

    scripts/build-kube.sh                        # once per machine; prints where the binaries are
    python -m tests.support.control_plane        # prints `export KUBECONFIG=...`; Ctrl-C stops it
    # in another shell: paste the export line, then use the kubectl built with it (same version)
    "$(scripts/build-kube.sh | sed -n 's/^kubectl=//p')" get namespaces

``--port 6443`` fixes the API server's port and ``--work-dir DIR`` keeps state, keys and logs in ``DIR``
(a restart with the same directory keeps the objects and the admin token); ``--help`` lists the rest.

From Python::

    with ControlPlane() as cp:
        token = cp.token_for_service_account("default", "default")
        cp.kubeconfig_for_token(token, tmp / "sa.kubeconfig")  # run a process as that ServiceAccount
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from sluice_local.processes import (
    LOG_TAIL_LINES,
    LOOPBACK,
    LoggedProcess,
    ManagedProcesses,
    interrupt_on_sigterm,
    kill_group,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = "sluice-local"
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    # Remove the protection finalizers that admission puts on every PVC and PV, so their deletion completes.
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)
"""Controllers kube-controller-manager runs: those that act without nodes, and what an operator's objects use."""

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-kube.sh"
BUILD_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0

_log = logging.getLogger(__name__)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used; the message says why and carries a log's tail."""


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Paths of the executables the control plane runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    etcd: Path
    etcdctl: Path


def ensure_binaries(
    *,
    script: Path = BUILD_SCRIPT,
    timeout: float = BUILD_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> Binaries:
    """Run ``scripts/build-kube.sh`` (builds on first use, else checks versions) and return what it printed.

    Each line of the script's progress goes to ``progress`` (default: this module's logger, at INFO). Raises
    ControlPlaneError if the script is missing (an installed package without the repository), fails (e.g. no
    Go) or does not finish within ``timeout`` seconds.
    """
    report = progress if progress is not None else functools.partial(_log.info, "%s")
    if not script.is_file():
        raise ControlPlaneError(
            f"{script} not found: the control plane's binaries are built by scripts/build-kube.sh of a Sluice "
            "checkout; run this from one, or pass ControlPlane(binaries=Binaries(...))"
        )
    deadline = time.monotonic() + timeout
    paths: dict[str, Path] = {}
    output: list[str] = []
    with subprocess.Popen(
        ["bash", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        timer = threading.Timer(timeout, kill_group, args=(process,))
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                name, sep, value = line.rstrip("\n").partition("=")
                if sep and name in {
                    "kube-apiserver",
                    "kube-controller-manager",
                    "kubectl",
                    "etcd",
                    "etcdctl",
                }:
                    paths[name.replace("-", "_")] = Path(value)
                else:
                    output.append(line.rstrip("\n"))
                    report(line.rstrip("\n"))
            code = process.wait()
        finally:
            timer.cancel()
    tail = "\n".join(output[-LOG_TAIL_LINES:])
    if time.monotonic() >= deadline:
        raise ControlPlaneError(f"{script} did not finish within {timeout:.0f} s; its last output:\n{tail}")
    if code != 0:
        raise ControlPlaneError(f"{script} failed (exit {code}):\n{tail}")
    try:
        return Binaries(**paths)
    except TypeError as exc:
        raise ControlPlaneError(
            f"{script} did not print all binary paths (got {sorted(paths)}):\n{tail}"
        ) from exc


def render_kubeconfig(
    *, server: str, ca_pem: bytes, token: str, user: str, namespace: str = "default"
) -> str:
    """A kubeconfig (YAML) with one cluster, one bearer-token user and one context, which is current."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": namespace}}
        ],
        "current-context": CLUSTER_NAME,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (kubeconfigs and token files hold credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an existing file keeps its old mode through os.open


def _http_get(
    url: str, *, token: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """Status and body of a GET on loopback; (0, reason) when nothing answers."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def _unverified_tls() -> ssl.SSLContext:
    # Only for health probes of the components' self-signed loopback endpoints, before their CA is known.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_probe(get: Callable[[], tuple[int, str]], *, ok: str | None) -> Callable[[], str | None]:
    """A readiness probe: None once ``get`` answers 200 (with a body that is ``ok`` or contains it, if given),
    else what it answered."""

    def probe() -> str | None:
        status, body = get()
        if status == 200 and (ok is None or body.strip() == ok or ok in body):
            return None
        return f"HTTP {status}: {body.strip()[-500:]}" if status else body

    return probe


class ControlPlane(ManagedProcesses):
    """etcd + kube-apiserver + kube-controller-manager in child processes on loopback; a context manager.

    ``work_dir`` keeps data, keys, tokens and the kubeconfig there (default: a temp dir removed on stop);
    ``log_dir`` puts the three logs there (default: ``<work dir>/logs``); ``apiserver_port`` fixes the API
    server's port (default: a free one); ``controllers`` are kube-controller-manager's; ``binaries`` skips
    ``scripts/build-kube.sh``. ``startup_seconds`` does not count a build.
    """

    what = "control plane"
    error = ControlPlaneError
    ready_timeout = READY_TIMEOUT_S
    stop_timeout = STOP_TIMEOUT_S
    temp_prefix = "sluice-k8s-"

    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        log_dir: Path | None = None,
        apiserver_port: int | None = None,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        binaries: Binaries | None = None,
    ) -> None:
        super().__init__(work_dir=work_dir)
        self._given_log_dir = Path(log_dir) if log_dir is not None else None
        self._requested_port = apiserver_port
        self._controllers = tuple(controllers)
        self._binaries = binaries
        self._openssl: str | None = None
        self._log_dir: Path | None = None
        self._server: str | None = None
        self._admin_token: str | None = None
        self._kubeconfig: Path | None = None
        self._ca_pem: bytes | None = None

    # -- properties ------------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``admin`` in ``system:masters``, the server's CA); only once started."""
        return self._require(self._kubeconfig)

    @property
    def server(self) -> str:
        """The API server's URL, ``https://127.0.0.1:PORT``; only once started."""
        return self._require(self._server)

    @property
    def admin_token(self) -> str:
        """A bearer token of user ``admin`` in group ``system:masters`` (bypasses RBAC); only once started."""
        return self._require(self._admin_token)

    @property
    def ca_pem(self) -> bytes:
        """PEM certificates that verify the API server's serving certificate; only once started."""
        return self._require(self._ca_pem)

    @property
    def binaries(self) -> Binaries:
        """The executables in use (kubectl among them); only once started."""
        return self._require(self._binaries)

    @property
    def work_dir(self) -> Path | None:
        """Directory with etcd's data, keys, tokens and kubeconfigs, once started."""
        return self._work_dir

    @property
    def log_dir(self) -> Path | None:
        """Directory with ``etcd.log``, ``kube-apiserver.log`` and ``kube-controller-manager.log``, once started."""
        return self._log_dir

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Build or find the binaries, then start etcd, the API server and the controller manager, each ready.

        Returns once ``/readyz`` of the API server and ``/healthz`` of the controller manager answer ``ok`` and
        the ``default`` ServiceAccount exists in ``default``. Raises ControlPlaneError (with the relevant log's
        tail) on a failed build, a process exiting early, or a component not ready within 120 s.
        """
        return super().start()

    def stop(self) -> None:
        """Stop the controller manager, the API server and etcd (process groups); remove the temp dir.

        Idempotent. A given ``work_dir`` and ``log_dir`` are kept.
        """
        super().stop()
        if self._work_dir is None and self._given_log_dir is None:
            self._log_dir = None  # it was in the temp dir
        self._server = self._admin_token = self._kubeconfig = self._ca_pem = None

    def _address(self) -> str | None:
        return self._server

    def _prerequisites(self) -> None:
        if self._binaries is None:
            self._binaries = ensure_binaries()
        self._openssl = shutil.which("openssl")
        if self._openssl is None:
            raise ControlPlaneError(
                "the openssl command is needed to make the ServiceAccount signing key; install it "
                "(Debian: apt-get install openssl)"
            )

    def _start_processes(self, deadline: float) -> None:
        assert self._openssl is not None
        work_dir = self._prepare_work_dir()
        self._log_dir = (self._given_log_dir or work_dir / "logs").resolve()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        api_port, etcd_port, peer_port, kcm_port = self._ports(4, self._requested_port)
        self._server = f"https://{LOOPBACK}:{api_port}"
        self._make_key(self._openssl)
        self._admin_token, kcm_token = self._tokens()
        self._start_etcd(etcd_port, peer_port, deadline)
        self._start_apiserver(api_port, etcd_port, deadline)
        self._kubeconfig = work_dir / "admin.kubeconfig"
        self._write_kubeconfig(self._kubeconfig, token=self._admin_token, user="admin")
        manager = self._start_controller_manager(kcm_port, kcm_token, deadline)
        self._await_default_service_account(manager, deadline)

    # -- using it --------------------------------------------------------------------------------------------

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A ``kubernetes`` client for the admin kubeconfig (or ``kubeconfig``); close it when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def token_for_service_account(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] | None = None,
    ) -> str:
        """A bound token for ServiceAccount ``namespace/name`` from the TokenRequest API (as a kubelet gets one).

        The token authenticates as ``system:serviceaccount:<namespace>:<name>``; audiences default to the API
        server's. The ServiceAccount must exist.
        """
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=list(audiences) if audiences is not None else [SERVICE_ACCOUNT_ISSUER],
                expiration_seconds=expiration_seconds,
            )
        )
        with self.api_client() as api:
            response = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
        return response.status.token

    def kubeconfig_for_token(self, token: str, path: Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig at ``path`` that authenticates with ``token`` (mode 0600) and return ``path``."""
        path = Path(path)
        self._write_kubeconfig(path, token=token, user="token-user", namespace=namespace)
        return path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane (admin unless ``kubeconfig``), capturing its output.

        With ``check`` (the default) a non-zero exit raises ControlPlaneError with kubectl's stderr.
        """
        command = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}"
            )
        return result

    def apply_crd(self, path: Path, *, timeout: float = 30.0) -> None:
        """Apply the CustomResourceDefinitions in ``path`` and wait until each is Established.

        ``kubectl wait --for=condition=Established`` fails outright (rather than waiting) while a fresh CRD has no
        status conditions yet, so the wait is retried until ``timeout``.
        """
        applied = self.kubectl("apply", "-f", str(path), "-o", "name").stdout.split()
        deadline = time.monotonic() + timeout
        for name in applied:
            while True:
                left = deadline - time.monotonic()
                result = self.kubectl(
                    "wait",
                    "--for=condition=Established",
                    name,
                    f"--timeout={max(1, int(left))}s",
                    check=False,
                )
                if result.returncode == 0:
                    break
                if time.monotonic() >= deadline:
                    raise ControlPlaneError(f"{name} not Established within {timeout:.0f} s: {result.stderr}")
                time.sleep(0.2)

    # -- steps of start() ------------------------------------------------------------------------------------

    def _make_key(self, openssl: str) -> None:
        """The RSA key that signs ServiceAccount tokens (kept in a given work_dir, so tokens stay valid)."""
        assert self._work_dir is not None
        key = self._work_dir / "service-account.key"
        if key.exists():
            return
        result = subprocess.run(
            [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ControlPlaneError(
                f"openssl could not make an RSA key (exit {result.returncode}):\n{result.stderr}"
            )
        key.chmod(0o600)

    def _tokens(self) -> tuple[str, str]:
        """The admin's and the controller manager's tokens, from the API server's token file (made if missing)."""
        assert self._work_dir is not None
        tokens = self._work_dir / "tokens.csv"
        if not tokens.exists():
            # token,user,uid,"groups": both users are in system:masters, which RBAC lets do anything.
            _write_private(
                tokens,
                f'{secrets.token_urlsafe(32)},admin,admin,"system:masters"\n'
                f'{secrets.token_urlsafe(32)},system:kube-controller-manager,kcm,"system:masters"\n',
            )
        rows = [line.split(",") for line in tokens.read_text().splitlines() if line.strip()]
        return rows[0][0], rows[1][0]

    def _launch_component(self, name: str, command: Sequence[str]) -> LoggedProcess:
        assert self._log_dir is not None
        return self._launch(name, command, log_file=self._log_dir / f"{name}.log")

    def _start_etcd(self, port: int, peer_port: int, deadline: float) -> None:
        assert self._work_dir is not None and self._binaries is not None
        client_url, peer_url = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{peer_port}"
        etcd = self._launch_component(
            "etcd",
            [
                str(self._binaries.etcd),
                "--name=sluice",
                f"--data-dir={self._work_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sluice={peer_url}",
                # Throwaway test data: skipping fsync makes every write (and so every API call) much faster.
                "--unsafe-no-fsync",
            ],
        )
        self._wait_until_ready(
            etcd, deadline, _http_probe(lambda: _http_get(f"{client_url}/health"), ok='"health":"true"')
        )

    def _start_apiserver(self, port: int, etcd_port: int, deadline: float) -> None:
        assert self._work_dir is not None and self._binaries is not None
        key = self._work_dir / "service-account.key"
        cert_dir = self._work_dir / "apiserver-certs"
        apiserver = self._launch_component(
            "kube-apiserver",
            [
                str(self._binaries.kube_apiserver),
                f"--etcd-servers=http://{LOOPBACK}:{etcd_port}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--advertise-address={LOOPBACK}",
                # The reconciler would publish the advertise address as the `kubernetes` Service's endpoint and
                # rejects loopback; nothing here routes to that Service anyway.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={cert_dir}",  # a self-signed serving certificate (and its CA) is generated here
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default in v1.34; named so that stays true whatever the defaults become.
                "--enable-admission-plugins=NodeRestriction,PodSecurity",
                # As kubeadm sets it: privileged pods are then PodSecurity's to refuse, not the API's validation.
                "--allow-privileged=true",
                f"--token-auth-file={self._work_dir / 'tokens.csv'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--profiling=false",
            ],
        )
        token = self._admin_token
        self._wait_until_ready(
            apiserver,
            deadline,
            _http_probe(
                lambda: _http_get(f"{self._server}/readyz", token=token, context=_unverified_tls()), ok="ok"
            ),
        )
        self._ca_pem = (cert_dir / "apiserver.crt").read_bytes()

    def _start_controller_manager(self, port: int, token: str, deadline: float) -> LoggedProcess:
        assert self._work_dir is not None and self._binaries is not None and self._ca_pem is not None
        kubeconfig = self._work_dir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(kubeconfig, token=token, user="system:kube-controller-manager")
        ca_file = self._work_dir / "apiserver-ca.crt"
        ca_file.write_bytes(self._ca_pem)
        manager = self._launch_component(
            "kube-controller-manager",
            [
                str(self._binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                # The API server has no client CA (tokens only), so there is no CA ConfigMap to look up.
                "--authentication-skip-lookup=true",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self._work_dir / 'kube-controller-manager-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(self._controllers)}",
                # Every controller acts as the manager's own user (system:masters) instead of one
                # ServiceAccount each, so no per-controller token plumbing is needed.
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={self._work_dir / 'service-account.key'}",
                f"--root-ca-file={ca_file}",  # published as ConfigMap kube-root-ca.crt in every namespace
                "--profiling=false",
            ],
        )
        self._wait_until_ready(
            manager,
            deadline,
            _http_probe(
                lambda: _http_get(f"https://{LOOPBACK}:{port}/healthz", context=_unverified_tls()), ok="ok"
            ),
        )
        return manager

    def _await_default_service_account(self, manager: LoggedProcess, deadline: float) -> None:
        """Wait for ServiceAccount default/default: the controllers are running, not just serving /healthz."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        self._wait_until_ready(
            manager,
            deadline,
            _http_probe(lambda: _http_get(url, token=self._admin_token, context=context), ok=None),
        )

    def _write_kubeconfig(self, path: Path, *, token: str, user: str, namespace: str = "default") -> None:
        text = render_kubeconfig(
            server=self.server, ca_pem=self.ca_pem, token=token, user=user, namespace=namespace
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, text)


# -- command line --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.control_plane",
        description="Start etcd, kube-apiserver and kube-controller-manager on loopback until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, help="the API server's port (default: a free one)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep data, keys, tokens, kubeconfig and logs here (default: a temp dir)",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="also write the admin kubeconfig here (e.g. ./kubeconfig)"
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build or check the binaries, print them, exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a control plane, print how to reach it, and stop it on Ctrl-C or SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    interrupt_on_sigterm()  # the same way out as Ctrl-C, through stop()
    plane = ControlPlane(work_dir=args.work_dir, apiserver_port=args.port)
    try:
        if args.build_only:
            binaries = ensure_binaries()
            for field in dataclasses.fields(binaries):
                print(f"{field.name.replace('_', '-')}={getattr(binaries, field.name)}")
            return 0
        plane.start()
        kubeconfig = plane.kubeconfig
        if args.kubeconfig is not None:
            kubeconfig = args.kubeconfig.resolve()
            shutil.copyfile(plane.kubeconfig, kubeconfig)
            kubeconfig.chmod(0o600)
        print(f"Kubernetes {plane.server} ready in {plane.startup_seconds:.1f} s; logs in {plane.log_dir}")
        print(f"kubectl: {plane.binaries.kubectl}")
        print(f"export KUBECONFIG={kubeconfig}", flush=True)
        print("Ctrl-C stops the control plane", file=sys.stderr, flush=True)
        while (dead := plane.exited()) is None:
            time.sleep(1)
        print(f"error: {dead}", file=sys.stderr)
        return 1
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return 0
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
