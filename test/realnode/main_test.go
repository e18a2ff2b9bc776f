// Package realnode runs herokunix the way a user does, on a real
// single-node cluster (hack/cluster): config/default installed with the
// project's own manifests, the manager in a pod under its ServiceAccount
// and generated RBAC, builds in real Job pods on a real kubelet, and the
// Heroku and registry stand-ins reached from pods over the cluster's own
// network namespace.
//
// It needs root and cgroups (v1); it installs containerd, runc and the CNI
// plugins from Debian and builds the Kubernetes binaries from the Go module
// proxy (see hack/cluster). It runs when HEROKUNIX_REQUIRE_REALNODE=1, as
// make test sets it (then a machine that cannot run it fails the test,
// naming what is missing), or HEROKUNIX_REALNODE=1, and skips otherwise.
//
// TestMain brings the cluster up (unless one is up already, which it
// reuses and leaves running), then runs the tests in a copy of this binary
// inside the cluster's network namespace, so the stand-ins it serves are on
// the node's network, and brings the cluster down if it started it
// (HEROKUNIX_REALNODE_KEEP=1 keeps it).
package realnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/herokunix/herokunix/hack/cluster/state"
)

const insideEnv = "HEROKUNIX_REALNODE_INSIDE"

func TestMain(m *testing.M) {
	if os.Getenv(insideEnv) == "1" {
		os.Exit(runInside(m))
	}
	os.Exit(runOutside())
}

// missing names what this machine lacks to run the suite.
func missing() []string {
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "root (the kubelet, containerd and the network namespace need uid 0)")
	}
	for _, p := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"} {
		if _, err := os.Stat(p); err != nil {
			out = append(out, "the cgroup v1 hierarchy "+p)
		}
	}
	for _, c := range []string{"unshare", "nsenter", "ip", "apt-get", "nix"} {
		if _, err := exec.LookPath(c); err != nil {
			out = append(out, "the command "+c)
		}
	}
	return out
}

func runOutside() int {
	required := os.Getenv("HEROKUNIX_REQUIRE_REALNODE") == "1"
	if !required && os.Getenv("HEROKUNIX_REALNODE") != "1" {
		fmt.Println("realnode: skipped; set HEROKUNIX_REALNODE=1 (as root) to run it on a real single-node cluster")
		return 0
	}
	if m := missing(); len(m) > 0 {
		fmt.Fprintf(os.Stderr, "realnode: this machine cannot run the real-node suite; missing: %v\n", m)
		if required {
			return 1
		}
		return 0
	}
	dir := state.Dir()
	// One cluster per machine: the kubelet's cgroups are global.
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	defer os.Remove(lock.Name())
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: locking:", err)
		return 1
	}

	root, _ := filepath.Abs("../..")
	cluster := func(args ...string) error {
		cmd := exec.Command("go", append([]string{"run", "./hack/cluster"}, args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "HEROKUNIX_CLUSTER_DIR="+dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	started := false
	if cluster("status") != nil {
		start := time.Now()
		started = true
		if err := cluster("up"); err != nil {
			fmt.Fprintln(os.Stderr, "realnode: cluster up:", err)
			_ = cluster("down")
			return 1
		}
		fmt.Fprintf(os.Stderr, "realnode: cluster up in %s\n", time.Since(start).Round(time.Second))
	}
	if started && os.Getenv("HEROKUNIX_REALNODE_KEEP") != "1" {
		defer func() {
			if err := cluster("down"); err != nil {
				fmt.Fprintln(os.Stderr, "realnode: cluster down:", err)
			}
		}()
	}
	start := time.Now()
	if err := cluster("load"); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: loading the images:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "realnode: images loaded in %s\n", time.Since(start).Round(time.Second))

	st, err := state.Read(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	// --wd: entering a mount namespace otherwise starts in its root.
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(st.HolderPID), "--net", "--mount", "--wd=" + wd, "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), insideEnv+"=1", "HEROKUNIX_CLUSTER_DIR="+dir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	return 0
}
