//go:build tools

// Package tools pins the Kubernetes commands Sluice builds from this module, so go.mod and go.sum fix every
// dependency: the test control plane (kube-apiserver, kube-controller-manager, kubectl; scripts/build-kube.sh)
// and the kind node's binaries and images (kubeadm, kubelet, kube-scheduler, kube-proxy;
// scripts/build-node-components.sh). k8s.io/kubernetes requires its staging modules (k8s.io/api,
// k8s.io/client-go, ...) at v0.0.0 and resolves them with replace directives that only apply inside its own
// repository; go.mod here replaces each one with the release of the same minor (v0.34.4). Its other dependencies
// are raised to the newest that helm, CoreDNS, local-path-provisioner or crictl requires (golang.org/x/..., grpc,
// otel, protobuf: patch and minor releases), so that every module they share is at one version and Go compiles it
// once for all of them (tests/unit/test_go_tools.py).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
