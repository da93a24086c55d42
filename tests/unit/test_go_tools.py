"""The Go modules in tools/ that are built into one Go build cache agree on every dependency they share.

Kubernetes (tools/kube) is built first; helm, CoreDNS, local-path-provisioner and crictl import much of the same
code (k8s.io/api, apimachinery, client-go, golang.org/x/..., protobuf: 75-90 % of their sources by size). Go reuses a
compiled package only when the package and everything below it are the same version, so one module at two versions
makes every package above it compile twice. This reads the go.mod files themselves (require and replace) and fails
naming each module two of them require at different versions, with the versions, except the few a tool must keep at
its own release's version (OWN_VERSIONS, each with its reason)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TOOLS = Path(__file__).resolve().parents[2] / "tools"
#: Built into the shared Go build cache by scripts/build-kube.sh, build-deploy-tools.sh and build-node-components.sh.
#: tools/etcd and tools/kind keep the dependencies of their releases: both are quick to build (37 s and 5 s, cold).
SHARING = ("kube", "helm", "coredns", "local-path-provisioner", "cri-tools")
#: Modules a tool keeps at its own release's version, and why. CoreDNS v1.12.1 (the version kubeadm v1.34 runs) does
#: not compile against client-go v0.33+ (cache.Config lost RetryOnError), and its client libraries pin the
#: kube-openapi and gnostic-models of their release (structured-merge-diff v4, gopkg.in/yaml.v3).
OWN_VERSIONS = {
    "coredns": {
        "k8s.io/api",
        "k8s.io/apimachinery",
        "k8s.io/client-go",
        "k8s.io/kube-openapi",
        "github.com/google/gnostic-models",
    },
}

REQUIRE_BLOCK = re.compile(r"^require \((.*?)^\)", re.S | re.M)
REPLACE_BLOCK = re.compile(r"^replace \((.*?)^\)", re.S | re.M)
REQUIRE_LINE = re.compile(r"^require (\S+) (\S+)", re.M)
REPLACE_LINE = re.compile(r"^replace (\S+)(?: \S+)? => (\S+) (\S+)", re.M)


def effective_versions(go_mod: str) -> dict[str, str]:
    """Module path -> the version a build uses: the required one, or the version a replace directive names."""
    required: dict[str, str] = {}
    for block in REQUIRE_BLOCK.findall(go_mod):
        for line in block.splitlines():
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("//"):
                required[fields[0]] = fields[1]
    required.update(dict(REQUIRE_LINE.findall(go_mod)))
    replaced: dict[str, str] = {}
    for block in REPLACE_BLOCK.findall(go_mod):
        for line in block.splitlines():
            fields = line.split()
            if "=>" in fields and len(fields) >= fields.index("=>") + 3:
                replaced[fields[0]] = fields[fields.index("=>") + 2]
    replaced.update({path: version for path, _, version in REPLACE_LINE.findall(go_mod)})
    return {path: replaced.get(path, version) for path, version in required.items()}


def test_the_parser_reads_blocks_single_lines_and_replacements():
    go_mod = """module example.com/x

go 1.24.0

require example.com/direct v1.2.3

require (
\texample.com/a v0.1.0 // indirect
\t// a comment
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => k8s.io/api v0.34.4
)

replace example.com/a v0.1.0 => example.com/a v0.1.1
"""
    assert effective_versions(go_mod) == {
        "example.com/direct": "v1.2.3",
        "example.com/a": "v0.1.1",
        "k8s.io/api": "v0.34.4",
    }


def test_tools_built_into_one_cache_share_one_version_of_each_module():
    versions = {tool: effective_versions((TOOLS / tool / "go.mod").read_text()) for tool in SHARING}
    by_module: dict[str, dict[str, str]] = {}
    for tool, modules in versions.items():
        for path, version in modules.items():
            if path not in OWN_VERSIONS.get(tool, ()):
                by_module.setdefault(path, {})[tool] = version
    split = {path: tools for path, tools in sorted(by_module.items()) if len(set(tools.values())) > 1}
    assert not split, (
        "modules required at more than one version (raise the lower ones with `go get MODULE@VERSION`):\n"
        + ("\n".join(f"  {path}: {tools}" for path, tools in split.items()))
    )


def test_the_shared_dependencies_are_the_ones_kubernetes_is_built_with():
    """The check above means something only if the tools really share code with Kubernetes."""
    kube = effective_versions((TOOLS / "kube" / "go.mod").read_text())
    for tool in SHARING[1:]:
        modules = effective_versions((TOOLS / tool / "go.mod").read_text())
        for path in ("golang.org/x/sys", "golang.org/x/net", "google.golang.org/protobuf"):
            assert modules.get(path) == kube[path], (tool, path, modules.get(path), kube[path])
        if tool not in OWN_VERSIONS:
            for path in ("k8s.io/apimachinery", "k8s.io/client-go"):
                assert modules.get(path) == kube[path], (tool, path, modules.get(path), kube[path])


def test_each_own_version_is_a_module_the_tool_requires():
    """An exception that no longer applies is removed rather than kept silently."""
    for tool, paths in OWN_VERSIONS.items():
        modules = effective_versions((TOOLS / tool / "go.mod").read_text())
        kube = effective_versions((TOOLS / "kube" / "go.mod").read_text())
        for path in paths:
            assert path in modules, f"{tool} no longer requires {path}: drop it from OWN_VERSIONS"
            assert modules[path] != kube.get(path), (
                f"{tool} now uses Kubernetes' {path}: drop it from OWN_VERSIONS"
            )
