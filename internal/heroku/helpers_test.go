package heroku

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/herokunix/herokunix/test/herokustub"
)

const testKey = "hrku-0123456789abcdef-SECRET-KEY"

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a stand-in with its API and registry on 127.0.0.1 and a client.
type env struct {
	stub     *herokustub.Server
	api      *httptest.Server
	reg      *httptest.Server
	client   *Client
	clock    *fakeClock
	regHost  string
	observed *recordingObserver
}

type envOption func(*herokustub.Options, *Options)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	clock := newFakeClock()
	so := herokustub.Options{APIKey: testKey, Now: clock.Now}
	co := Options{APIKey: testKey, Now: clock.Now, UserAgent: "herokunix-test"}
	for _, o := range opts {
		o(&so, &co)
	}
	stub := herokustub.New(so)
	api := httptest.NewServer(stub.APIHandler())
	reg := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() {
		stub.Close()
		api.Close()
		reg.Close()
	})
	e := &env{stub: stub, api: api, reg: reg, clock: clock, regHost: strings.TrimPrefix(reg.URL, "http://"),
		observed: &recordingObserver{}}
	co.BaseURL = api.URL
	co.RegistryHost = e.regHost
	if co.Observer == nil {
		co.Observer = e.observed
	}
	c, err := New(co)
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	return e
}

// push writes a Docker schema 2 linux/amd64 image to <repo>:latest and
// returns its image ID (config digest).
func (e *env) push(t *testing.T, repo string) string {
	t.Helper()
	img := dockerImage(t, "amd64")
	ref, err := name.NewTag(e.regHost+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(e.client.RegistryAuth()), remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", repo, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func dockerImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	return mutate.ConfigMediaType(img, types.DockerConfigJSON)
}

type observedCall struct {
	op     string
	status int
}

type recordingObserver struct {
	mu        sync.Mutex
	calls     []observedCall
	remaining []int
}

func (o *recordingObserver) ObserveCall(op string, status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, observedCall{op, status})
}

func (o *recordingObserver) ObserveRateLimitRemaining(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.remaining = append(o.remaining, n)
}

func (o *recordingObserver) snapshot() ([]observedCall, []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observedCall(nil), o.calls...), append([]int(nil), o.remaining...)
}

// apiCalls returns the stand-in's API calls.
func (e *env) apiCalls() []herokustub.Call {
	var out []herokustub.Call
	for _, c := range e.stub.Calls() {
		if c.Handler == "api" {
			out = append(out, c)
		}
	}
	return out
}

// bodyRecorder keeps the request bodies sent to a handler.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies []recordedBody
	next   http.Handler
}

type recordedBody struct {
	method, path, accept string
	body                 []byte
}
