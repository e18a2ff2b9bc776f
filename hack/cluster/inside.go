package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// insideUp runs in the cluster's namespaces: it writes the PKI and the
// configuration and starts the daemons, each in a session of its own so
// they outlive this process.
func (c *cluster) insideUp(ctx context.Context) error {
	pk, err := newPKI(c.path("pki"))
	if err != nil {
		return err
	}
	if err := pk.serviceAccountKey(); err != nil {
		return err
	}
	apiHosts := []string{NodeIP, APIServiceIP, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	for _, i := range []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, apiHosts},
		{"admin", "herokunix-admin", []string{"system:masters"}, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"controller-manager", "system:kube-controller-manager", nil, nil},
		{"scheduler", "system:kube-scheduler", nil, nil},
		{"kube-proxy", "system:kube-proxy", nil, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, []string{NodeIP, NodeName}},
	} {
		if err := pk.issue(i.name, i.cn, i.orgs, i.hosts...); err != nil {
			return err
		}
	}
	server := "https://" + NodeIP + ":6443"
	for _, n := range []string{"admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"} {
		path := c.path("pki", n+".kubeconfig")
		if n == "admin" {
			path = c.path("kubeconfig")
		}
		if err := pk.kubeconfig(path, n, server); err != nil {
			return err
		}
	}
	if err := c.writeConfigs(); err != nil {
		return err
	}
	// Per network namespace: pods' traffic through the bridge passes
	// iptables (Services), and forwarding is on; nothing routed off the
	// node leaves (see up), and this rule says so at once.
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"} {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			return fmt.Errorf("setting %s in the cluster's namespace: %w", k, err)
		}
	}
	if out, err := exec.Command("iptables", "-I", "FORWARD", "-o", "node0", "-j", "REJECT").CombinedOutput(); err != nil {
		return fmt.Errorf("iptables: %w: %s", err, out)
	}

	pki := func(f string) string { return c.path("pki", f) }
	cmds := map[string][]string{
		"containerd": {"containerd", "--config", c.path("containerd.toml")},
		"etcd": {c.path("bin", "etcd"), "--name", "default", "--data-dir", c.path("etcd"),
			"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
			"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			"--initial-cluster", "default=http://127.0.0.1:2380", "--listen-metrics-urls", "http://127.0.0.1:2381"},
		"kube-apiserver": {c.path("bin", "kube-apiserver"),
			"--etcd-servers", "http://127.0.0.1:2379", "--advertise-address", NodeIP, "--bind-address", "0.0.0.0",
			"--secure-port", "6443", "--client-ca-file", pki("ca.crt"),
			"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
			"--service-cluster-ip-range", ServiceCIDR, "--authorization-mode", "Node,RBAC",
			"--enable-admission-plugins", "NodeRestriction",
			"--kubelet-client-certificate", pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key", pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority", pki("ca.crt"),
			"--kubelet-preferred-address-types", "InternalIP",
			"--allow-privileged=true",
			"--audit-policy-file", c.path("audit-policy.yaml"), "--audit-log-path", c.path("logs", "audit.log"),
			"--audit-log-maxsize", "200", "--audit-log-maxbackup", "1"},
		"kube-controller-manager": {c.path("bin", "kube-controller-manager"),
			"--kubeconfig", pki("controller-manager.kubeconfig"),
			"--authentication-kubeconfig", pki("controller-manager.kubeconfig"),
			"--authorization-kubeconfig", pki("controller-manager.kubeconfig"),
			"--root-ca-file", pki("ca.crt"), "--service-account-private-key-file", pki("sa.key"),
			"--use-service-account-credentials=true", "--leader-elect=false", "--bind-address", "127.0.0.1",
			"--cluster-signing-cert-file", pki("ca.crt"), "--cluster-signing-key-file", pki("ca.key"),
			"--service-cluster-ip-range", ServiceCIDR},
		"kube-scheduler": {c.path("bin", "kube-scheduler"), "--kubeconfig", pki("scheduler.kubeconfig"),
			"--authentication-kubeconfig", pki("scheduler.kubeconfig"),
			"--authorization-kubeconfig", pki("scheduler.kubeconfig"),
			"--leader-elect=false", "--bind-address", "127.0.0.1"},
		"kubelet": {c.path("bin", "kubelet"), "--config", c.path("kubelet.yaml"),
			"--kubeconfig", pki("kubelet.kubeconfig"), "--root-dir", c.path("kubelet"),
			"--node-ip", NodeIP, "--hostname-override", NodeName},
		"kube-proxy": {c.path("bin", "kube-proxy"), "--config", c.path("kube-proxy.yaml")},
	}

	client, err := c.adminClient()
	if err != nil {
		return err
	}
	for _, d := range daemons {
		if err := c.start(d, cmds[d]); err != nil {
			return err
		}
		var check func() error
		switch d {
		case "containerd":
			check = func() error { _, err := os.Stat(c.path("containerd.sock")); return err }
		case "etcd":
			check = func() error { return httpOK(http.DefaultClient, "http://127.0.0.1:2379/health") }
		case "kube-apiserver":
			check = func() error { return httpOK(client, server+"/readyz") }
		}
		if check != nil {
			if err := waitFor(ctx, d, 90*time.Second, c.aliveAnd(d, check)); err != nil {
				return err
			}
		}
	}
	// A usable node: Ready, and the default ServiceAccount (pods need it)
	// with the root CA ConfigMap (projected tokens need it).
	if err := waitFor(ctx, "node "+NodeName+" Ready", 120*time.Second, c.aliveAnd("kubelet", func() error {
		return jsonHas(client, server+"/api/v1/nodes/"+NodeName, `"type":"Ready","status":"True"`)
	})); err != nil {
		return err
	}
	if err := waitFor(ctx, "the default ServiceAccount", 60*time.Second, func() error {
		if err := jsonHas(client, server+"/api/v1/namespaces/default/serviceaccounts/default", `"name":"default"`); err != nil {
			return err
		}
		return jsonHas(client, server+"/api/v1/namespaces/default/configmaps/kube-root-ca.crt", `"ca.crt"`)
	}); err != nil {
		return err
	}
	return os.WriteFile(c.path("ready"), nil, 0o644)
}

func (c *cluster) aliveAnd(d string, check func() error) func() error {
	return func() error {
		if !alive(c.pid(d)) {
			return fmt.Errorf("%s exited; see %s", d, c.path("logs", d+".log"))
		}
		return check()
	}
}

func (c *cluster) start(name string, argv []string) error {
	logf("starting %s", name)
	f, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The daemons find runc, iptables and the CNI plugins on PATH.
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Release(); err != nil {
		return err
	}
	return os.WriteFile(c.path("pids", name), []byte(strconv.Itoa(pid)), 0o644)
}

func (c *cluster) adminClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(c.path("pki", "admin.crt"), c.path("pki", "admin.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}, nil
}

func httpOK(client *http.Client, url string) error {
	_, err := get(client, url)
	return err
}

func jsonHas(client *http.Client, url, want string) error {
	body, err := get(client, url)
	if err != nil {
		return err
	}
	if !strings.Contains(strings.ReplaceAll(body, " ", ""), want) {
		return fmt.Errorf("%s: no %s yet", url, want)
	}
	return nil
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b.String(), nil
}

func (c *cluster) writeConfigs() error {
	pki := func(f string) string { return c.path("pki", f) }
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # This VM withholds CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.path("containerd.sock"), PauseImage, c.path("cni")),
		"cni/10-herokunix.conflist": fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "herokunix", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
`, PodCIDR),
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
address: 0.0.0.0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
tlsCertFile: %q
tlsPrivateKeyFile: %q
resolvConf: ""
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://%s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
failSwapOn: false
serializeImagePulls: false
`, pki("ca.crt"), pki("kubelet.crt"), pki("kubelet.key"), c.path("containerd.sock")),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
hostnameOverride: %s
clusterCIDR: %s
bindAddress: %s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, pki("kube-proxy.kubeconfig"), NodeName, PodCIDR, NodeIP),
		// Metadata of every request, so a test can find the denials.
		"audit-policy.yaml": `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`,
	}
	for name, content := range files {
		p := c.path(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
