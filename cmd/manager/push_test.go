package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/test/herokustub"
)

// A push the registry refuses with 401 writes a typed credentials failure
// to its termination message (and fails), so the controller can tell a bad
// key from a broken build; the message never holds the key.
func TestAPushTheRegistryRefusesReportsACredentialsFailure(t *testing.T) {
	const key = "push-test-key"
	stub := herokustub.New(herokustub.Options{APIKey: key})
	stub.CreateApp("acme-shop", "container")
	reg := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() { reg.Close(); stub.Close() })

	ws := t.TempDir()
	sp := "/nix/store/00000000000000000000000000000000-web"
	if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "path:/x", Processes: map[string]artifact.ProcessOutput{
		"web": {Kind: artifact.KindClosure, OutPath: sp, Closure: []artifact.StorePath{{Path: sp, NarSize: 1}}, Command: []string{"bin/web"}},
	}}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ key, app string }{
		"wrong key":                   {"wrong-" + key, "acme-shop"},
		"an app the key cannot reach": {key, "someone-else"},
	} {
		t.Run(name, func(t *testing.T) {
			result := filepath.Join(t.TempDir(), "termination-log")
			t.Setenv("HEROKU_API_KEY", tc.key)
			// A push with an image to reuse layers from meets the
			// refusal at once, fetching that image.
			err := runPush([]string{"--workspace", ws, "--app", tc.app, "--registry", strings.TrimPrefix(reg.URL, "http://"),
				"--insecure-registry", "--result", result, "--reuse-from", "web=sha256:" + strings.Repeat("0", 64)})
			if err == nil {
				t.Fatal("the push succeeded")
			}
			msg, rerr := os.ReadFile(result)
			if rerr != nil {
				t.Fatalf("no termination message: %v", rerr)
			}
			f := artifact.ParseFailure(msg)
			if f == nil || f.Failure != artifact.FailureUnauthorized {
				t.Fatalf("termination message %q is not a credentials failure", msg)
			}
			if strings.Contains(string(msg), tc.key) {
				t.Errorf("the termination message holds the key: %s", msg)
			}
		})
	}
}

// Any other failure leaves the termination message to the log tail.
func TestAPushThatFailsOtherwiseWritesNoFailure(t *testing.T) {
	t.Setenv("HEROKU_API_KEY", "k")
	result := filepath.Join(t.TempDir(), "termination-log")
	err := runPush([]string{"--workspace", t.TempDir(), "--app", "acme-shop", "--registry", "127.0.0.1:1", "--insecure-registry", "--result", result})
	if err == nil {
		t.Fatal("a push of an empty workspace succeeded")
	}
	if _, serr := os.Stat(result); !os.IsNotExist(serr) {
		t.Errorf("a termination message was written: %v", serr)
	}
}

// largestValidManifest is the build manifest of the largest spec the CRD
// takes: 16 process types of 30 characters, a 1024-byte flake ref (its
// query full of '&', which JSON would otherwise escape to six bytes each),
// a 40-hex revision. Every process ships the same docker archive.
func largestValidManifest(t *testing.T, ws string, lockedFlake string) *artifact.Manifest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(filepath.Join(ws, "image.tar"), name.MustParseReference("image:latest"), img); err != nil {
		t.Fatal(err)
	}
	m := &artifact.Manifest{Revision: strings.Repeat("a1", 20), LockedFlake: lockedFlake, Processes: map[string]artifact.ProcessOutput{}}
	for i := range 16 {
		pt := fmt.Sprintf("p%02d", i) + strings.Repeat("x", 27)
		m.Processes[pt] = artifact.ProcessOutput{Attribute: "packages.x86_64-linux." + pt, Kind: artifact.KindDockerArchive,
			OutPath: "/nix/store/00000000000000000000000000000000-" + pt, Archive: "image.tar"}
	}
	if err := artifact.WriteManifest(ws, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// longFlakeRef is a flake ref of exactly n bytes whose query is full of
// '&'.
func longFlakeRef(n int) string {
	ref := "github:acme/shop/" + strings.Repeat("a1", 20) + "?dir=app"
	for len(ref) < n {
		ref += "&x=y"
	}
	return ref[:n]
}

// TestTheLargestValidSpecsResultFitsTheTerminationMessage: after pushing
// every image of the largest valid spec, the result written to the
// termination message is within the kubelet's 4096 bytes and parses back
// whole.
func TestTheLargestValidSpecsResultFitsTheTerminationMessage(t *testing.T) {
	const key = "push-test-key"
	stub := herokustub.New(herokustub.Options{APIKey: key})
	stub.CreateApp("acme-shop", "container")
	reg := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() { reg.Close(); stub.Close() })
	ws := t.TempDir()
	m := largestValidManifest(t, ws, longFlakeRef(1024))

	result := filepath.Join(t.TempDir(), "termination-log")
	t.Setenv("HEROKU_API_KEY", key)
	if err := runPush([]string{"--workspace", ws, "--app", "acme-shop", "--registry", strings.TrimPrefix(reg.URL, "http://"),
		"--insecure-registry", "--result", result}); err != nil {
		t.Fatalf("push: %v", err)
	}
	msg, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) > artifact.MaxResultSize {
		t.Fatalf("termination message is %d bytes, over %d", len(msg), artifact.MaxResultSize)
	}
	res, err := artifact.ParseResult(msg)
	if err != nil {
		t.Fatalf("the result does not parse back: %v\n%s", err, msg)
	}
	if res.Revision != m.Revision || res.LockedFlake != m.LockedFlake || len(res.Images) != len(m.Processes) {
		t.Errorf("result %+v does not say what was pushed", res)
	}
	for pt, img := range res.Images {
		if _, ok := m.Processes[pt]; !ok || img.ImageID == "" || img.Digest == "" {
			t.Errorf("image %s = %+v", pt, img)
		}
	}
	t.Logf("termination message: %d bytes", len(msg))
}

// TestAPushWhoseResultCannotFitFailsBeforeUploading: a locked ref whose
// JSON escaping would overflow the termination message ('"' takes two
// bytes) fails with a clear error before the registry sees anything.
func TestAPushWhoseResultCannotFitFailsBeforeUploading(t *testing.T) {
	var requests atomic.Int32
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(reg.Close)
	ws := t.TempDir()
	largestValidManifest(t, ws, "path:/"+strings.Repeat(`"`, 1018))

	t.Setenv("HEROKU_API_KEY", "k")
	result := filepath.Join(t.TempDir(), "termination-log")
	err := runPush([]string{"--workspace", ws, "--app", "acme-shop", "--registry", strings.TrimPrefix(reg.URL, "http://"),
		"--insecure-registry", "--result", result})
	if err == nil || !strings.Contains(err.Error(), "would not fit") {
		t.Fatalf("err = %v; want the result not fitting", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the registry saw %d requests", n)
	}
}
