package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

var (
	githubSecret  = []byte("gh-secret")
	gitlabToken   = []byte("gl-token")
	genericSecret = []byte("generic-secret")
)

type staticSecrets struct {
	data map[string][]byte
	err  error
}

func (s staticSecrets) Secrets(context.Context, time.Time) (map[string][]byte, error) {
	return s.data, s.err
}

func app(name, flake string, mutate ...func(*herokunixv1.HerokuNixApp)) *herokunixv1.HerokuNixApp {
	a := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
		Spec:       herokunixv1.HerokuNixAppSpec{AppName: name, Flake: flake},
	}
	for _, m := range mutate {
		m(a)
	}
	return a
}

// fixture is a Handler over a fake API with resources that follow various
// refs, recording which resources were patched.
type fixture struct {
	t       *testing.T
	h       *Handler
	now     time.Time
	mu      sync.Mutex
	patched []string
	failing bool
}

func newFixture(t *testing.T, mutate ...func(*Options)) *fixture {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := herokunixv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	objs := []client.Object{
		app("main", "github:acme/shop?ref=main"),
		app("default", "github:acme/shop"),
		app("git-url", "git+https://github.com/acme/shop.git?ref=main"),
		app("dev", "github:acme/shop/dev"),
		app("pinned", "github:acme/shop/0123456789abcdef0123456789abcdef01234567"),
		app("suspended", "github:acme/shop?ref=main", func(a *herokunixv1.HerokuNixApp) { a.Spec.Suspend = true }),
		app("other-repo", "github:acme/blog?ref=main"),
		app("gitlab", "gitlab:acme/shop?ref=main"),
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.failing {
				return errors.New("the API server is unavailable")
			}
			f.patched = append(f.patched, obj.GetName())
			return c.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	o := Options{
		Client: c,
		Secrets: staticSecrets{data: map[string][]byte{
			SecretKeyGitHub: githubSecret, SecretKeyGitLab: gitlabToken, SecretKeyGeneric: genericSecret,
		}},
		Now: func() time.Time { return f.now },
		Log: logr.Discard(),
	}
	for _, m := range mutate {
		m(&o)
	}
	f.h = New(o)
	return f
}

func (f *fixture) marked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.patched)
	slices.Sort(out)
	return out
}

// send serves one request and returns its status and decoded body.
func (f *fixture) send(req *http.Request) (int, Response) {
	f.t.Helper()
	if req.RemoteAddr == "" || req.RemoteAddr == "192.0.2.1:1234" {
		req.RemoteAddr = "203.0.113.7:40000"
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var resp Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		f.t.Fatalf("answer is not JSON: %q", rec.Body.String())
	}
	return rec.Code, resp
}

func githubPush(repo, ref, defaultBranch string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": ref, "after": "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd",
		"repository": map[string]any{"full_name": repo, "html_url": "https://github.com/" + repo, "default_branch": defaultBranch},
	})
	return b
}

func githubRequest(body []byte, secret []byte, delivery, event string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if secret != nil {
		req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
	}
	return req
}

func gitlabRequest(body []byte, token, event, uuid string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", bytes.NewReader(body))
	req.Header.Set("X-Gitlab-Token", token)
	req.Header.Set("X-Gitlab-Event", event)
	if uuid != "" {
		req.Header.Set("X-Gitlab-Event-UUID", uuid)
	}
	return req
}

func gitlabPush(repo, ref string) []byte {
	b, _ := json.Marshal(map[string]any{
		"object_kind": "push", "ref": ref, "after": "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd",
		"project": map[string]any{"path_with_namespace": repo, "web_url": "https://gitlab.com/" + repo, "default_branch": "main"},
	})
	return b
}

func genericRequest(body, secret []byte, at time.Time) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/generic", bytes.NewReader(body))
	ts, sig := SignGeneric(secret, body, at)
	req.Header.Set(HeaderGenericTimestamp, ts)
	req.Header.Set(HeaderGenericSignature, sig)
	return req
}

func TestAGitHubPushMarksExactlyTheResourcesFollowingTheBranch(t *testing.T) {
	f := newFixture(t)
	code, resp := f.send(githubRequest(githubPush("acme/shop", "refs/heads/main", "main"), githubSecret, "d-1", "push"))
	if code != http.StatusAccepted || resp.Status != "accepted" || resp.Marked != 3 {
		t.Fatalf("got %d %+v, want 202 accepted with 3 marked", code, resp)
	}
	if got, want := f.marked(), []string{"default", "git-url", "main"}; !slices.Equal(got, want) {
		t.Errorf("marked %v, want %v", got, want)
	}
	var a herokunixv1.HerokuNixApp
	if err := f.h.opts.Client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "main"}, &a); err != nil {
		t.Fatal(err)
	}
	if v := a.Annotations[herokunixv1.ReconcileRequestAnnotation]; v != f.now.Format(time.RFC3339Nano) {
		t.Errorf("annotation %q, want the event's time", v)
	}
}

func TestAPushToAnotherBranchMarksOnlyItsFollowers(t *testing.T) {
	f := newFixture(t)
	code, resp := f.send(githubRequest(githubPush("Acme/Shop", "refs/heads/dev", "main"), githubSecret, "d-1", "push"))
	if code != http.StatusAccepted || resp.Marked != 1 || !slices.Equal(f.marked(), []string{"dev"}) {
		t.Errorf("got %d %+v, marked %v; want only dev", code, resp, f.marked())
	}
}

// Each request below is refused or ignored, and patches nothing.
func TestBadRequestsMarkNothing(t *testing.T) {
	push := githubPush("acme/shop", "refs/heads/main", "main")
	big := bytes.Repeat([]byte("x"), 2<<10)
	cases := []struct {
		name   string
		opts   func(*Options)
		req    func() *http.Request
		code   int
		status string
	}{
		{"a wrong signature", nil, func() *http.Request { return githubRequest(push, []byte("wrong"), "d", "push") }, http.StatusUnauthorized, "unauthorized"},
		{"no signature", nil, func() *http.Request { return githubRequest(push, nil, "d", "push") }, http.StatusUnauthorized, "unauthorized"},
		{"a malformed signature", nil, func() *http.Request {
			r := githubRequest(push, githubSecret, "d", "push")
			r.Header.Set("X-Hub-Signature-256", "sha256=zz")
			return r
		}, http.StatusUnauthorized, "unauthorized"},
		{"a SHA-1 signature only", nil, func() *http.Request {
			r := githubRequest(push, nil, "d", "push")
			r.Header.Set("X-Hub-Signature", "sha1=0123")
			return r
		}, http.StatusUnauthorized, "unauthorized"},
		{"a signature of another body", nil, func() *http.Request {
			r := githubRequest(push, githubSecret, "d", "push")
			r.Body = io.NopCloser(bytes.NewReader(githubPush("acme/blog", "refs/heads/main", "main")))
			return r
		}, http.StatusUnauthorized, "unauthorized"},
		{"no delivery id", nil, func() *http.Request { return githubRequest(push, githubSecret, "", "push") }, http.StatusUnauthorized, "unauthorized"},
		{"an unknown repository", nil, func() *http.Request {
			return githubRequest(githubPush("acme/unknown", "refs/heads/main", "main"), githubSecret, "d", "push")
		}, http.StatusAccepted, "accepted"},
		{"a tag push", nil, func() *http.Request {
			return githubRequest(githubPush("acme/shop", "refs/tags/v1", "main"), githubSecret, "d", "push")
		}, http.StatusAccepted, "ignored"},
		{"a branch deletion", nil, func() *http.Request {
			b, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": zeroCommit, "deleted": true,
				"repository": map[string]any{"full_name": "acme/shop", "default_branch": "main"}})
			return githubRequest(b, githubSecret, "d", "push")
		}, http.StatusAccepted, "ignored"},
		{"a ping", nil, func() *http.Request { return githubRequest([]byte(`{"zen":"x"}`), githubSecret, "d", "ping") }, http.StatusOK, "pong"},
		{"another event", nil, func() *http.Request { return githubRequest(push, githubSecret, "d", "issues") }, http.StatusAccepted, "ignored"},
		{"a signed body that is not a push", nil, func() *http.Request { return githubRequest([]byte(`[1,2]`), githubSecret, "d", "push") }, http.StatusBadRequest, "bad-request"},
		{"a signed push without a repository", nil, func() *http.Request {
			return githubRequest([]byte(`{"ref":"refs/heads/main"}`), githubSecret, "d", "push")
		}, http.StatusBadRequest, "bad-request"},
		{"a GET", nil, func() *http.Request { return httptest.NewRequest(http.MethodGet, "/hooks/github", nil) }, http.StatusMethodNotAllowed, "method-not-allowed"},
		{"an unknown endpoint", nil, func() *http.Request { return httptest.NewRequest(http.MethodPost, "/hooks/bitbucket", nil) }, http.StatusNotFound, "not-found"},
		{"a sender without a key in the Secret", func(o *Options) {
			o.Secrets = staticSecrets{data: map[string][]byte{SecretKeyGitLab: gitlabToken}}
		}, func() *http.Request { return githubRequest(push, githubSecret, "d", "push") }, http.StatusNotFound, "not-found"},
		{"an unreadable Secret", func(o *Options) { o.Secrets = staticSecrets{err: errors.New("forbidden")} },
			func() *http.Request { return githubRequest(push, githubSecret, "d", "push") }, http.StatusServiceUnavailable, "service-unavailable"},
		{"a body over the limit, announced", func(o *Options) { o.MaxBody = 1 << 10 },
			func() *http.Request { return githubRequest(big, githubSecret, "d", "push") }, http.StatusRequestEntityTooLarge, "request-entity-too-large"},
		{"a body over the limit, unannounced", func(o *Options) { o.MaxBody = 1 << 10 }, func() *http.Request {
			r := githubRequest(big, githubSecret, "d", "push")
			r.ContentLength = -1
			return r
		}, http.StatusRequestEntityTooLarge, "request-entity-too-large"},
		{"a wrong GitLab token", nil, func() *http.Request {
			return gitlabRequest(gitlabPush("acme/shop", "refs/heads/main"), "nope", "Push Hook", "u")
		},
			http.StatusUnauthorized, "unauthorized"},
		{"a GitLab event that is not a push", nil, func() *http.Request {
			return gitlabRequest(gitlabPush("acme/shop", "refs/heads/main"), string(gitlabToken), "Merge Request Hook", "u")
		}, http.StatusAccepted, "ignored"},
		{"a generic event signed with another key", nil, func() *http.Request {
			return genericRequest([]byte(`{"repository":"https://github.com/acme/shop","branch":"main"}`), []byte("x"), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		}, http.StatusUnauthorized, "unauthorized"},
		{"a stale generic event", nil, func() *http.Request {
			return genericRequest([]byte(`{"repository":"https://github.com/acme/shop","branch":"main"}`), genericSecret, time.Date(2026, 3, 1, 11, 50, 0, 0, time.UTC))
		}, http.StatusUnauthorized, "unauthorized"},
		{"a generic event from the future", nil, func() *http.Request {
			return genericRequest([]byte(`{"repository":"https://github.com/acme/shop","branch":"main"}`), genericSecret, time.Date(2026, 3, 1, 12, 10, 0, 0, time.UTC))
		}, http.StatusUnauthorized, "unauthorized"},
		{"a generic event with unknown fields", nil, func() *http.Request {
			return genericRequest([]byte(`{"repository":"https://github.com/acme/shop","branch":"main","build":"evil"}`), genericSecret, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		}, http.StatusBadRequest, "bad-request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opts []func(*Options)
			if c.opts != nil {
				opts = append(opts, c.opts)
			}
			f := newFixture(t, opts...)
			code, resp := f.send(c.req())
			if code != c.code || resp.Status != c.status {
				t.Errorf("got %d %+v, want %d %s", code, resp, c.code, c.status)
			}
			if m := f.marked(); len(m) != 0 || resp.Marked != 0 {
				t.Errorf("marked %v (%d)", m, resp.Marked)
			}
		})
	}
}

func TestAMethodNotAllowedSaysWhichIs(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/hooks/gitlab", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
		t.Errorf("got %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// A replayed delivery is answered 200 and changes nothing: the first one
// already asked for the reconcile, and an error would make the sender retry.
func TestAReplayedDeliveryIsANoOp(t *testing.T) {
	f := newFixture(t)
	push := githubPush("acme/shop", "refs/heads/main", "main")
	if code, _ := f.send(githubRequest(push, githubSecret, "d-1", "push")); code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", code)
	}
	f.now = f.now.Add(10 * time.Minute)
	code, resp := f.send(githubRequest(push, githubSecret, "d-1", "push"))
	if code != http.StatusOK || resp.Status != "duplicate" || resp.Marked != 0 {
		t.Errorf("replay: %d %+v", code, resp)
	}
	if n := len(f.marked()); n != 3 {
		t.Errorf("%d patches, want the first delivery's 3 only", n)
	}
	// Another delivery of the same push (a new commit) is handled.
	if code, resp := f.send(githubRequest(push, githubSecret, "d-2", "push")); code != http.StatusAccepted || resp.Marked != 3 {
		t.Errorf("a new delivery: %d %+v", code, resp)
	}
	// Past the window the id is forgotten.
	f.now = f.now.Add(DefaultReplayWindow)
	if code, _ := f.send(githubRequest(push, githubSecret, "d-1", "push")); code != http.StatusAccepted {
		t.Errorf("a delivery id past the window: %d", code)
	}
}

func TestGitLabAndGenericDeliveriesAreRemembered(t *testing.T) {
	f := newFixture(t)
	gl := gitlabPush("acme/shop", "refs/heads/main")
	if code, resp := f.send(gitlabRequest(gl, string(gitlabToken), "Push Hook", "u-1")); code != http.StatusAccepted || resp.Marked != 1 {
		t.Fatalf("GitLab push: %d %+v", code, resp)
	}
	if code, resp := f.send(gitlabRequest(gl, string(gitlabToken), "Push Hook", "u-1")); code != http.StatusOK || resp.Status != "duplicate" {
		t.Errorf("GitLab replay: %d %+v", code, resp)
	}
	// Without a delivery id header, the body identifies the delivery.
	if code, _ := f.send(gitlabRequest(gl, string(gitlabToken), "Push Hook", "")); code != http.StatusAccepted {
		t.Errorf("GitLab push without a UUID: %d", code)
	}
	if code, resp := f.send(gitlabRequest(gl, string(gitlabToken), "Push Hook", "")); code != http.StatusOK || resp.Status != "duplicate" {
		t.Errorf("GitLab replay without a UUID: %d %+v", code, resp)
	}
	body := []byte(`{"repository":"https://github.com/acme/shop","branch":"main","defaultBranch":"main"}`)
	if code, resp := f.send(genericRequest(body, genericSecret, f.now)); code != http.StatusAccepted || resp.Marked != 3 {
		t.Fatalf("generic push: %d %+v", code, resp)
	}
	if code, resp := f.send(genericRequest(body, genericSecret, f.now)); code != http.StatusOK || resp.Status != "duplicate" {
		t.Errorf("generic replay: %d %+v", code, resp)
	}
	if got, want := f.marked(), []string{"default", "git-url", "gitlab", "gitlab", "main"}; !slices.Equal(got, want) {
		t.Errorf("marked %v, want %v", got, want)
	}
}

// A delivery that failed half-way is not remembered: the sender's retry
// is handled.
func TestAFailedDeliveryCanBeRetried(t *testing.T) {
	f := newFixture(t)
	push := githubPush("acme/shop", "refs/heads/main", "main")
	f.failing = true
	if code, resp := f.send(githubRequest(push, githubSecret, "d-1", "push")); code != http.StatusInternalServerError {
		t.Fatalf("with the API down: %d %+v", code, resp)
	}
	f.failing = false
	if code, resp := f.send(githubRequest(push, githubSecret, "d-1", "push")); code != http.StatusAccepted || resp.Marked != 3 {
		t.Errorf("retry: %d %+v", code, resp)
	}
}

func TestFloodsAreRateLimitedPerSourceAndInTotal(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Limits = Limits{PerSource: 1, PerSourceBurst: 3, Global: 1, GlobalBurst: 5} })
	push := githubPush("acme/shop", "refs/heads/main", "main")
	from := func(addr string, n int) []int {
		var codes []int
		for i := range n {
			r := githubRequest(push, []byte("wrong"), fmt.Sprint(i), "push")
			r.RemoteAddr = addr
			code, _ := f.send(r)
			codes = append(codes, code)
		}
		return codes
	}
	// One source: its burst of 3 is looked at (and refused: bad
	// signatures), the rest is cut off before any signature is computed.
	if got := from("198.51.100.1:1", 5); !slices.Equal(got, []int{401, 401, 401, 429, 429}) {
		t.Errorf("one source: %v", got)
	}
	// Another source has its own bucket, but the global one (5) runs out.
	if got := from("198.51.100.2:1", 3); !slices.Equal(got, []int{401, 401, 429}) {
		t.Errorf("a second source: %v", got)
	}
	// Once the buckets refill, a valid push goes through.
	f.now = f.now.Add(10 * time.Second)
	r := githubRequest(push, githubSecret, "ok", "push")
	r.RemoteAddr = "198.51.100.1:1"
	if code, resp := f.send(r); code != http.StatusAccepted || resp.Marked != 3 {
		t.Errorf("after the flood: %d %+v", code, resp)
	}
	rec := httptest.NewRecorder()
	for range 5 {
		rec = httptest.NewRecorder()
		r := githubRequest(push, nil, "x", "push")
		r.RemoteAddr = "198.51.100.3:1"
		f.h.ServeHTTP(rec, r)
	}
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a 429 without Retry-After: %d %v", rec.Code, rec.Header())
	}
}

func TestTheSecretIsReadOncePerTTL(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = herokunixv1.AddToScheme(scheme)
	gets := 0
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets++
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	s := &SecretSource{Reader: c, Name: client.ObjectKey{Namespace: "herokunix-system", Name: "webhooks"}}
	now := time.Now()
	if _, err := s.Secrets(context.Background(), now); err == nil || !strings.Contains(err.Error(), "webhooks") {
		t.Errorf("a missing Secret: %v", err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "webhooks", Namespace: "herokunix-system"}, Data: map[string][]byte{SecretKeyGitHub: githubSecret}}
	if err := c.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d, err := s.Secrets(context.Background(), now.Add(time.Duration(i)*time.Second))
		if err != nil || string(d[SecretKeyGitHub]) != "gh-secret" {
			t.Fatalf("%v %q", err, d[SecretKeyGitHub])
		}
	}
	if _, err := s.Secrets(context.Background(), now.Add(SecretTTL+time.Second)); err != nil {
		t.Fatal(err)
	}
	if gets != 3 {
		t.Errorf("%d reads, want 3 (the failed one, one, one after the TTL)", gets)
	}
}

func TestEveryAnswerIsObserved(t *testing.T) {
	var got []string
	f := newFixture(t, func(o *Options) {
		o.Observe = func(provider, status string, marked int) {
			got = append(got, fmt.Sprintf("%s %s %d", provider, status, marked))
		}
	})
	f.send(githubRequest(githubPush("acme/shop", "refs/heads/main", "main"), githubSecret, "d-1", "push"))
	f.send(githubRequest(githubPush("acme/shop", "refs/heads/main", "main"), []byte("x"), "d-2", "push"))
	f.send(httptest.NewRequest(http.MethodPost, "/hooks/../metrics", nil))
	if want := []string{"github accepted 3", "github unauthorized 0", "unknown not-found 0"}; !slices.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}
