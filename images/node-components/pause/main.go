// Command pause is the sandbox ("infra") container of every pod on Sluice's kind node: it holds the pod's
// namespaces open and does nothing else. It sleeps until SIGINT or SIGTERM, then exits 0, and reaps any child
// that ends up re-parented to it (it is PID 1 of the pod when the pod shares its PID namespace). It uses only the
// standard library and is built static (CGO_ENABLED=0) into a FROM-scratch image by
// scripts/build-node-components.sh, tagged as the pause image kubeadm names (registry.k8s.io/pause:<version>).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is the pause image version this build is tagged as; set with -ldflags "-X main.version=...".
var version = "unset"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-v", "--version":
			fmt.Printf("pause (sluice) %s\n", version)
			return
		default:
			fmt.Fprintf(os.Stderr, "pause: unexpected argument %q; the only one accepted is -v\n", os.Args[1])
			os.Exit(2)
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}

	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
		os.Exit(0)
	}
}

// reap collects every child that has exited, so none is left a zombie. Signals coalesce, so one SIGCHLD may
// stand for several exits: loop until no exited child remains.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
