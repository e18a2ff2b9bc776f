// Command cluster starts and stops a throwaway single-node Kubernetes
// cluster on this machine with no internet and no Docker: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy, containerd, runc and the bridge CNI plugin, all v1.37.2.
//
//	go run ./hack/cluster up     # builds what is missing, starts, writes a kubeconfig
//	go run ./hack/cluster exec -- CMD...  # runs CMD next to the cluster
//	go run ./hack/cluster load   # builds and imports the herokunix images
//	go run ./hack/cluster down   # stops it and leaves the host as it was
//
// It needs root, cgroups and Debian's containerd, runc and
// containernetworking-plugins (installed with apt when missing). The
// Kubernetes binaries come from the Go module proxy through
// hack/envtest-assets.sh.
//
// Everything runs in a network and mount namespace of its own (see
// /work/shared/design/realnode.md): node, pod and Service addresses exist
// only inside it and no packet leaves the machine; the host's /run,
// /var/lib and /var/log are replaced inside it by directories under the
// cluster's directory, so the paths the kubelet, containerd and the CNI
// plugins write regardless of their configuration never reach the host.
// What cannot be namespaced (the kernel settings the kubelet changes and
// its cgroups) is recorded at `up` and restored at `down`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: cluster up|down|load|exec -- CMD...|status

  up     build what is missing, start the cluster, write $DIR/kubeconfig
  down   stop the cluster and undo every change to the host
  load   build the herokunix manager and Nix images and import them
  exec   run CMD inside the cluster's network namespace
         (e.g. exec -- kubectl --kubeconfig $DIR/kubeconfig get nodes)
  status exit 0 when the cluster is up

DIR is $HEROKUNIX_CLUSTER_DIR, default /var/tmp/herokunix-cluster.
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCluster()
	var err error
	switch os.Args[1] {
	case "up":
		err = c.up(ctx)
	case "inside-up": // the part of up that runs inside the namespaces
		err = c.insideUp(ctx)
	case "down":
		err = c.down()
	case "load":
		err = c.load(ctx)
	case "status":
		if !c.running() {
			fmt.Fprintln(os.Stderr, "cluster: not running")
			os.Exit(1)
		}
		fmt.Println(c.dir)
	case "exec":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			usage()
		}
		err = c.exec(args)
	default:
		usage()
	}
	if err != nil {
		var exit *exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		os.Exit(1)
	}
}

type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
}

// waitFor polls ok until it returns nil or timeout passes.
func waitFor(ctx context.Context, what string, timeout time.Duration, ok func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var err error
	for {
		if err = ok(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}
