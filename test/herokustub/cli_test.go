package herokustub

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// herokuCLIVersion is the npm package `heroku` hack/install-heroku-cli.sh
// installs by default.
const herokuCLIVersion = "11.10.0"

// cliHost is HEROKU_HOST: the CLI talks to api.<host> and registry.<host>
// over HTTPS on 443 and sends the key only to hosts under heroku.com,
// herokai.com, herokuspace.com or herokudev.com (heroku.md "Heroku's own
// clients"). No such host exists, and the lookup hook sends every name to
// the stand-in on loopback anyway.
const cliHost = "herokustub.herokudev.com"

// dnsHook makes every name lookup of the CLI's Node process answer with
// the stand-in's loopback address, and records the names asked for.
const dnsHook = `'use strict';
const dns = require('dns');
const fs = require('fs');
const addr = process.env.HEROKUSTUB_ADDR;
const log = process.env.HEROKUSTUB_LOOKUPS;
function record(name) { try { fs.appendFileSync(log, String(name) + '\n'); } catch (e) {} }
function lookup(hostname, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') { options = { family: options }; }
  record(hostname);
  if (options && options.all) { process.nextTick(callback, null, [{ address: addr, family: 4 }]); return {}; }
  process.nextTick(callback, null, addr, 4);
  return {};
}
dns.lookup = lookup;
dns.promises.lookup = async (hostname, options) => {
  record(hostname);
  return options && options.all ? [{ address: addr, family: 4 }] : { address: addr, family: 4 };
};
`

// herokuCLI finds the CLI installed by hack/install-heroku-cli.sh. Like
// the Nix tests, it skips when the CLI is missing unless
// HEROKUNIX_REQUIRE_HEROKU_CLI is set (as `make test` sets it).
func herokuCLI(t *testing.T) string {
	t.Helper()
	required := os.Getenv("HEROKUNIX_REQUIRE_HEROKU_CLI") != ""
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if required {
			t.Fatalf("HEROKUNIX_REQUIRE_HEROKU_CLI is set but %s", msg)
		}
		t.Skipf("%s (set HEROKUNIX_REQUIRE_HEROKU_CLI=1 to make this a failure)", msg)
	}
	exe := os.Getenv("HEROKUNIX_HEROKU_CLI")
	if exe == "" {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		exe = filepath.Join(root, "bin", "heroku-cli", herokuCLIVersion, "node_modules", ".bin", "heroku")
	}
	if _, err := os.Stat(exe); err != nil {
		missing("the Heroku CLI is not installed (run hack/install-heroku-cli.sh): %v", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing("node is not on PATH: %v", err)
	}
	return exe
}

// testCA makes a CA and a certificate for the given names, signed by it.
func testCA(t *testing.T, names ...string) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herokustub test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// cliEnv is the stand-in served to the Heroku CLI over HTTPS on 443 of a
// loopback address of its own.
type cliEnv struct {
	f       *fixture
	exe     string
	dir     string
	addr    string
	lookups string
	caFile  string
	hook    string

	mu  sync.Mutex
	sni []string
	// onStream, when set, runs once when the CLI first reads a release's
	// output stream: the release phase ends while the CLI streams it.
	onStream func()
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	exe := herokuCLI(t)
	f := newFixture(t, Options{})
	e := &cliEnv{f: f, exe: exe, dir: t.TempDir()}
	caPEM, cert := testCA(t, "api."+cliHost, "registry."+cliHost)
	e.caFile = filepath.Join(e.dir, "ca.pem")
	e.hook = filepath.Join(e.dir, "dns-hook.cjs")
	e.lookups = filepath.Join(e.dir, "lookups")
	for file, data := range map[string][]byte{e.caFile: caPEM, e.hook: []byte(dnsHook), e.lookups: nil} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A loopback address of this test's own, so that port 443 is free.
	var ln net.Listener
	var err error
	for i := 0; i < 20 && ln == nil; i++ {
		b, _ := rand.Int(rand.Reader, big.NewInt(250*250))
		n := int(b.Int64())
		e.addr = fmt.Sprintf("127.%d.%d.%d", 10+n%200, 1+n/250%250, 2+n%250)
		ln, err = net.Listen("tcp", e.addr+":443")
	}
	if ln == nil {
		if os.Getenv("HEROKUNIX_REQUIRE_HEROKU_CLI") != "" {
			t.Fatalf("cannot listen on port 443 of a loopback address (the CLI only speaks HTTPS on 443; run as root): %v", err)
		}
		t.Skipf("cannot listen on port 443 of a loopback address (needs root): %v", err)
	}
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/streams/release/") {
			e.mu.Lock()
			finish := e.onStream
			e.onStream = nil
			e.mu.Unlock()
			if finish != nil {
				finish()
			}
		}
		if strings.HasPrefix(r.Host, "registry.") {
			f.s.RegistryHandler().ServeHTTP(w, r)
			return
		}
		f.s.APIHandler().ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		e.mu.Lock()
		e.sni = append(e.sni, h.ServerName)
		e.mu.Unlock()
		return &cert, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return e
}

// run runs one CLI command and returns its output.
func (e *cliEnv) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.command(t, args...)
	if err != nil {
		t.Fatalf("heroku %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// command runs one CLI command and returns its output and exit error.
func (e *cliEnv) command(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.exe, args...)
	home := filepath.Join(e.dir, "home")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"HEROKU_API_KEY=" + key,
		"HEROKU_HOST=" + cliHost,
		"HEROKU_SKIP_ANALYTICS=1",
		"DISABLE_TELEMETRY=true",
		"HEROKU_SKIP_NEW_VERSION_CHECK=true",
		"HEROKU_DISABLE_AUTOUPDATE=1",
		"NO_COLOR=1",
		"FORCE_COLOR=0",
		"NODE_EXTRA_CA_CERTS=" + e.caFile,
		"NODE_OPTIONS=--require " + e.hook,
		"HEROKUSTUB_ADDR=" + e.addr,
		"HEROKUSTUB_LOOKUPS=" + e.lookups,
	}
	out, err := cmd.CombinedOutput()
	t.Logf("heroku %s (%v):\n%s", strings.Join(args, " "), err, out)
	return string(out), err
}

// unwrap undoes the CLI's wrapping of warnings (" ›   " continuation
// lines).
func unwrap(out string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(out, "›", " ")), " ")
}

// names are the host names the CLI looked up and asked for in TLS.
func (e *cliEnv) names(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(e.lookups)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	e.mu.Lock()
	out = append(out, e.sni...)
	e.mu.Unlock()
	return out
}

// TestHerokuCLIDrivesTheStandIn runs Heroku's own CLI against the stand-in
// (heroku.md "Heroku's own clients"): container:release of an image pushed
// with go-containerregistry, releases, ps:scale (quantity as a string) and
// container:rm (PATCH /apps/{app}/formation/{type}).
func TestHerokuCLIDrivesTheStandIn(t *testing.T) {
	e := newCLIEnv(t)
	f := e.f
	web := f.push(t, "shop/web")
	f.s.ResetCalls()

	out := e.run(t, "container:release", "web", "-a", "shop")
	last := f.latest(t, "shop")
	if last.Version != 3 || !last.Current || last.Images["web"] != web {
		t.Fatalf("after container:release: %+v\n%s", last, out)
	}
	var sawManifest, sawPatch bool
	for _, c := range f.s.Calls() {
		switch {
		case c.Handler == "registry" && c.Path == "/v2/shop/web/manifests/latest":
			sawManifest = c.Status == 200 && c.Auth == "basic" && c.BasicUser == ""
		case c.Method == "PATCH" && c.Path == "/apps/shop/formation":
			sawPatch = c.Status == 200 && c.Accept == dockerReleases
		}
	}
	if !sawManifest || !sawPatch {
		t.Errorf("container:release calls %+v", f.s.Calls())
	}

	// Per-type ignore: the CLI shows the stand-in's [U] Warning-Message.
	out = e.run(t, "container:release", "web", "-a", "shop")
	if n := len(f.s.Releases("shop")); n != 3 || !strings.Contains(unwrap(out), "The process type web was not updated, because it is already running the specified docker image.") {
		t.Errorf("releasing the running image again: %d releases\n%s", n, out)
	}

	// A release phase that fails while the CLI streams its output: the CLI
	// reads the release once more and reports the failure; v3 stays current.
	f.push(t, "shop/release")
	e.mu.Lock()
	e.onStream = func() {
		if err := f.s.CompletePendingRelease("shop", false); err != nil {
			t.Error(err)
		}
	}
	e.mu.Unlock()
	out, err := e.command(t, "container:release", "release", "-a", "shop")
	if err == nil || !strings.Contains(out, "Running release command...") || !strings.Contains(out, "release command failed") {
		t.Errorf("a failing release phase: %v\n%s", err, out)
	}
	if cur := f.currentVersion("shop"); cur != 3 || f.latest(t, "shop").Status != "failed" {
		t.Errorf("current v%d, latest %+v", cur, f.latest(t, "shop"))
	}

	f.s.ResetCalls()
	out = e.run(t, "releases", "-a", "shop")
	if want := "Deployed web (" + strings.TrimPrefix(web, "sha256:")[:12] + ")"; !strings.Contains(out, "v3") || !strings.Contains(out, want) {
		t.Errorf("heroku releases printed:\n%s\nwant v3 %q", out, want)
	}
	if calls := f.s.Calls(); len(calls) == 0 || calls[0].Accept != "application/vnd.heroku+json; version=3.sdk" || calls[0].Status != 200 {
		t.Errorf("releases calls %+v", calls)
	}

	out = e.run(t, "ps:scale", "web=2", "-a", "shop")
	if fm := f.s.Formation("shop"); len(fm) != 1 || fm[0].Quantity != 2 {
		t.Errorf("after ps:scale web=2: %+v\n%s", fm, out)
	}

	out = e.run(t, "container:rm", "web", "-a", "shop")
	if fm := f.s.Formation("shop"); len(fm) != 0 {
		t.Errorf("after container:rm web: %+v\n%s", fm, out)
	}

	// The CLI reached nothing but the stand-in's two hosts.
	names := e.names(t)
	t.Logf("names looked up or asked for in TLS: %v", names)
	if len(names) == 0 {
		t.Error("the lookup hook saw no lookups")
	}
	for _, n := range names {
		if n != "api."+cliHost && n != "registry."+cliHost {
			t.Errorf("the CLI looked up %q", n)
		}
	}
	if !slices.Contains(names, "registry."+cliHost) {
		t.Errorf("names %v", names)
	}
}
