package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/herokunix/herokunix/internal/localenv"
)

// TestMetricsNeedAnAuthorizedCaller runs the manager as cmd/manager makes
// it, against a real API server, and scrapes its metrics endpoint: no
// token is refused (401), a ServiceAccount without the metrics-reader
// ClusterRole of config/rbac is refused (403), one bound to it reads the
// metrics. The authorizer caches answers, so each caller asks once.
func TestMetricsNeedAnAuthorizedCaller(t *testing.T) {
	control, err := localenv.NewControlPlane(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := control.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := control.Stop(); err != nil {
			t.Error(err)
		}
	})
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The metrics-reader ClusterRole as config/rbac installs it, bound to
	// the "scraper" ServiceAccount; "stranger" gets nothing.
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := map[string]string{}
	for _, sa := range []string{"scraper", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		token[sa] = tr.Status.Token
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "scraper-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	// The flags' defaults, but for addresses.
	f := controllerFlags{metricsAddr: addr, metricsSecure: true, probeAddr: "0", builder: "job", concurrency: 1,
		herokuAPIURL: "https://api.heroku.invalid", registryHost: "registry.heroku.invalid", requestsPerHour: 2250}
	mgr, err := newManager(ctx, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	// The certificate is self-signed: what is checked is who may read.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	scrape := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	g := gomega.NewWithT(t)
	// Until the server listens, the scrape fails to connect.
	g.Eventually(func() error { _, _, err := scrape(""); return err }).WithTimeout(time.Minute).Should(gomega.Succeed())

	code, _, err := scrape("")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(code).To(gomega.Equal(http.StatusUnauthorized), "a scrape without a token")

	// The TokenReview of a token the API server does not know ends in an
	// error, which controller-runtime's filter answers with 500.
	code, body, err := scrape("not-a-token")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(code).To(gomega.BeElementOf(http.StatusUnauthorized, http.StatusInternalServerError), "a scrape with a token the API server does not know")
	g.Expect(body).NotTo(gomega.ContainSubstring("controller_runtime_"))

	code, _, err = scrape(token["stranger"])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(code).To(gomega.Equal(http.StatusForbidden), "a scrape by a ServiceAccount without metrics-reader")

	code, body, err = scrape(token["scraper"])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(code).To(gomega.Equal(http.StatusOK), "a scrape by a ServiceAccount with metrics-reader: %s", body)
	g.Expect(strings.Contains(body, "controller_runtime_")).To(gomega.BeTrue(), "metrics body:\n%s", body)
}
