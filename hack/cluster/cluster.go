package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herokunix/herokunix/hack/cluster/state"
)

// Addresses inside the cluster's network namespace. The node address sits
// on one end of a veth pair whose other end is in the same namespace, so
// the namespace has a default route but nothing routed to it leaves.
const (
	NodeName     = "herokunix"
	NodeIP       = "10.201.0.1"
	PodCIDR      = "10.244.0.0/24"
	ServiceCIDR  = "10.96.0.0/24"
	APIServiceIP = "10.96.0.1"
	K8sVersion   = "1.37.2"
	// PauseImage is the sandbox image; load imports it at up.
	PauseImage = "herokunix.local/pause:1"
)

// sysctls the kubelet sets on the whole machine (the net.* ones it and
// the CNI plugins change are per network namespace).
var hostSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// daemons in start order; down stops them in reverse.
var daemons = []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

type cluster struct {
	dir  string
	repo string
}

func newCluster() *cluster {
	return &cluster{dir: state.Dir(), repo: repoRoot()}
}

func repoRoot() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		wd, _ := os.Getwd()
		return wd
	}
	return strings.TrimSpace(string(out))
}

func (c *cluster) path(p ...string) string { return filepath.Join(append([]string{c.dir}, p...)...) }

func (c *cluster) state() (*state.State, error) { return state.Read(c.dir) }

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// running: the holder lives and every daemon too.
func (c *cluster) running() bool {
	s, err := c.state()
	if err != nil || !alive(s.HolderPID) {
		return false
	}
	for _, d := range daemons {
		if !alive(c.pid(d)) {
			return false
		}
	}
	_, err = os.Stat(c.path("ready"))
	return err == nil
}

func (c *cluster) pid(name string) int {
	b, err := os.ReadFile(c.path("pids", name))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// preflight names everything missing that apt cannot install.
func preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run as uid 0)")
	}
	for _, p := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, "cgroup v1 hierarchy "+p)
		}
	}
	for _, t := range []string{"unshare", "nsenter", "ip", "go"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, "command "+t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this machine cannot run the cluster; missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// aptPackages maps what the cluster runs to the Debian package with it.
var aptPackages = map[string]string{
	"/usr/bin/containerd":         "containerd",
	"/usr/bin/ctr":                "containerd",
	"/usr/sbin/runc":              "runc",
	"/usr/lib/cni/bridge":         "containernetworking-plugins",
	"/usr/sbin/iptables":          "iptables",
	"/bin/busybox":                "busybox-static", // the Nix image's shell and tools
	"/usr/sbin/conntrack":         "conntrack",
	"/usr/sbin/xtables-nft-multi": "iptables",
}

func installPackages() error {
	need := map[string]bool{}
	for p, pkg := range aptPackages {
		if _, err := os.Stat(p); err != nil {
			need[pkg] = true
		}
	}
	if len(need) == 0 {
		return nil
	}
	var pkgs []string
	for p := range need {
		pkgs = append(pkgs, p)
	}
	logf("installing %s with apt", strings.Join(pkgs, " "))
	run := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	if err := run(append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err != nil {
		if err := run("update"); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
		if err := run(append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err != nil {
			return fmt.Errorf("installing %v: %w", pkgs, err)
		}
	}
	return nil
}

// binaries builds (or takes from the cache) the Kubernetes binaries.
func (c *cluster) binaries() (string, error) {
	cmd := exec.Command(filepath.Join(c.repo, "hack", "envtest-assets.sh"), "node")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the Kubernetes binaries: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *cluster) up(ctx context.Context) error {
	start := time.Now()
	if err := preflight(); err != nil {
		return err
	}
	if c.running() {
		logf("already running (%s)", c.dir)
		return nil
	}
	if _, err := os.Stat(c.path(state.File)); err == nil {
		logf("tearing down a half-started cluster first")
		if err := c.down(); err != nil {
			return err
		}
	}
	if err := installPackages(); err != nil {
		return err
	}
	bin, err := c.binaries()
	if err != nil {
		return err
	}
	logf("binaries ready after %s", time.Since(start).Round(time.Second))

	for _, d := range []string{"", "pids", "logs", "bin", "ns/run", "ns/var-lib", "ns/var-log"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := c.saveSysctls(); err != nil {
		return err
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if err := os.Symlink(filepath.Join(bin, b), c.path("bin", b)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}

	// The holder keeps the namespaces alive; its mounts replace the
	// host's /run, /var/lib and /var/log inside them.
	script := strings.Join([]string{
		"set -e",
		"mount --bind " + c.path("ns/run") + " /run",
		"mount --bind " + c.path("ns/var-lib") + " /var/lib",
		"mount --bind " + c.path("ns/var-log") + " /var/log",
		"ip link set lo up",
		"ip link add node0 type veth peer name node1",
		"ip addr add " + NodeIP + "/32 dev node0",
		"ip link set node0 up",
		"ip link set node1 up",
		"ip route add default dev node0",
		"exec sleep infinity",
	}, "\n")
	holder := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	holder.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	hl, err := os.Create(c.path("logs", "holder.log"))
	if err != nil {
		return err
	}
	defer hl.Close()
	holder.Stdout, holder.Stderr = hl, hl
	if err := holder.Start(); err != nil {
		return fmt.Errorf("creating the namespaces: %w", err)
	}
	go holder.Wait() //nolint:errcheck // reaped so it never lingers as a zombie while up runs
	st := state.State{
		Dir: c.dir, HolderPID: holder.Process.Pid, NodeIP: NodeIP,
		Kubeconfig: c.path("kubeconfig"), Containerd: c.path("containerd.sock"), AuditLog: c.path("logs", "audit.log"),
	}
	if err := state.Write(c.dir, st); err != nil {
		return err
	}
	if err := waitFor(ctx, "the network namespace", 10*time.Second, func() error {
		return exec.Command("nsenter", "-t", strconv.Itoa(st.HolderPID), "--net", "--mount", "--", "ip", "route", "get", "1.1.1.1").Run()
	}); err != nil {
		return fmt.Errorf("%w; see %s", err, c.path("logs", "holder.log"))
	}

	// Everything else starts from inside, so the daemons inherit the
	// namespaces and this program can check on them over their network.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(st.HolderPID), "--net", "--mount", "--", self, "inside-up")
	in.Env = append(os.Environ(), "HEROKUNIX_CLUSTER_DIR="+c.dir, "HEROKUNIX_REPO="+c.repo)
	in.Stdout, in.Stderr = os.Stderr, os.Stderr
	if err := in.Run(); err != nil {
		return fmt.Errorf("starting the cluster: %w (logs in %s; `cluster down` cleans up)", err, c.path("logs"))
	}
	if err := c.importPause(ctx); err != nil {
		return err
	}
	logf("up in %s: kubeconfig %s (reach it with `go run ./hack/cluster exec -- CMD`)", time.Since(start).Round(time.Second), st.Kubeconfig)
	return nil
}

func (c *cluster) saveSysctls() error {
	saved := c.path("sysctls.saved")
	if _, err := os.Stat(saved); err == nil {
		return nil // an earlier, unfinished up recorded the host's own values
	}
	var b strings.Builder
	for _, k := range hostSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, strings.TrimSpace(string(v)))
	}
	return os.WriteFile(saved, []byte(b.String()), 0o644)
}

func (c *cluster) restoreSysctls() error {
	b, err := os.ReadFile(c.path("sysctls.saved"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			return fmt.Errorf("restoring %s: %w", k, err)
		}
	}
	return nil
}

func (c *cluster) exec(args []string) error {
	s, err := c.state()
	if err != nil || !alive(s.HolderPID) {
		return fmt.Errorf("the cluster is not up (%s)", c.dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	// --wd: entering a mount namespace otherwise starts in its root.
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(s.HolderPID), "--net", "--mount", "--wd=" + wd, "--"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Kubeconfig, "HEROKUNIX_CLUSTER_DIR="+c.dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: ee.ExitCode()}
		}
		return err
	}
	return nil
}
