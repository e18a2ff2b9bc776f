package herokustub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const key = "stub-test-key"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	s        *Server
	api, reg *httptest.Server
	clock    *clock
	host     string
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts.APIKey = key
	opts.Now = c.Now
	s := New(opts)
	f := &fixture{s: s, api: httptest.NewServer(s.APIHandler()), reg: httptest.NewServer(s.RegistryHandler()), clock: c}
	f.host = strings.TrimPrefix(f.reg.URL, "http://")
	t.Cleanup(func() { s.Close(); f.api.Close(); f.reg.Close() })
	s.CreateApp("shop", "container")
	return f
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) call(t *testing.T, method, path, accept, auth, body string, extra ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.api.URL+path, r)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

const v3 = "application/vnd.heroku+json; version=3"

func (f *fixture) get(t *testing.T, path string, extra ...string) answer {
	return f.call(t, "GET", path, v3, "Bearer "+key, "", extra...)
}

func herokuError(t *testing.T, a answer) (id, msg string) {
	t.Helper()
	// missing_version carries its text under "error" (heroku.md "Platform
	// API in general"); every other error under "message".
	var e struct{ ID, Message, Error string }
	if err := json.Unmarshal(a.body, &e); err != nil || e.ID == "" || (e.Message == "") == (e.Error == "") {
		t.Fatalf("not a Heroku error body: %s", a.body)
	}
	if (e.ID == "missing_version") != (e.Error != "") {
		t.Fatalf("the text of %s is under the wrong key: %s", e.ID, a.body)
	}
	return e.ID, e.Message + e.Error
}

func TestAPIAnswersLikeHeroku(t *testing.T) {
	f := newFixture(t, Options{})
	tests := []struct {
		name           string
		method, path   string
		accept, auth   string
		status         int
		id             string
		countsAgainst  bool
		wantRemainingH bool
	}{
		{"no key is unauthorized", "GET", "/apps/shop", v3, "", 401, "unauthorized", false, true},
		{"a wrong key is unauthorized", "GET", "/apps/shop", v3, "Bearer nope", 401, "unauthorized", false, true},
		{"no Accept version is refused", "GET", "/apps/shop", "application/json", "Bearer " + key, 400, "missing_version", true, true},
		{"an unknown version is refused", "GET", "/apps/shop", "application/vnd.heroku+json; version=2", "Bearer " + key, 400, "missing_version", true, true},
		{"an unknown route is not found", "GET", "/apps/shop/addons", v3, "Bearer " + key, 404, "not_found", true, true},
		{"an unknown verb is not found", "DELETE", "/apps/shop", v3, "Bearer " + key, 404, "not_found", true, true},
		{"an unknown app is not found", "GET", "/apps/nope", v3, "Bearer " + key, 404, "not_found", true, true},
		{"an unknown release is not found", "GET", "/apps/shop/releases/99", v3, "Bearer " + key, 404, "not_found", true, true},
		{"a known app is found", "GET", "/apps/shop", v3, "Bearer " + key, 200, "", true, true},
		{"the app is found by id too", "GET", "/apps/shop", v3, "Basic " + basic("", key), 200, "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.s.RateLimitRemaining()
			a := f.call(t, tt.method, tt.path, tt.accept, tt.auth, "")
			if a.status != tt.status {
				t.Fatalf("status = %d %s", a.status, a.body)
			}
			if tt.id != "" {
				if id, _ := herokuError(t, a); id != tt.id {
					t.Errorf("id = %q, want %q", id, tt.id)
				}
			}
			if a.header.Get("Request-Id") == "" || a.header.Get("RateLimit-Remaining") == "" {
				t.Errorf("headers = %v", a.header)
			}
			spent := before - f.s.RateLimitRemaining()
			if (spent == 1) != tt.countsAgainst {
				t.Errorf("tokens spent = %d", spent)
			}
		})
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestRateLimitBucketEmptiesAndRefillsAt75AMinute(t *testing.T) {
	f := newFixture(t, Options{RateLimitBudget: 100})
	f.s.SetRateLimitRemaining(1)
	if a := f.get(t, "/apps/shop"); a.status != 200 || a.header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("last token: %d, remaining %q", a.status, a.header.Get("RateLimit-Remaining"))
	}
	a := f.get(t, "/apps/shop")
	if id, _ := herokuError(t, a); a.status != 429 || id != "rate_limit" || a.header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("empty bucket: %d %s", a.status, a.body)
	}
	// GET /account/rate-limits still answers and is free.
	a = f.get(t, "/account/rate-limits")
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"remaining":0`)) {
		t.Fatalf("rate-limits: %d %s", a.status, a.body)
	}
	f.clock.Advance(time.Minute)
	if n := f.s.RateLimitRemaining(); n != 75 {
		t.Errorf("after a minute: %d, want 75", n)
	}
	f.clock.Advance(time.Hour)
	if n := f.s.RateLimitRemaining(); n != 100 {
		t.Errorf("after an hour: %d, want the budget 100", n)
	}
}

func TestReleasesHonourRangeAndPage(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.CreateApp("many", "container")
	for range 5 {
		f.s.mu.Lock()
		f.s.addRelease(f.s.apps["many"], "config change", nil, "succeeded")
		f.s.mu.Unlock()
	}
	versions := func(a answer) []int {
		var rels []struct{ Version int }
		if err := json.Unmarshal(a.body, &rels); err != nil {
			t.Fatalf("%s", a.body)
		}
		var out []int
		for _, r := range rels {
			out = append(out, r.Version)
		}
		return out
	}
	a := f.get(t, "/apps/many/releases", "Range", "version ..; max=1, order=desc")
	if v := versions(a); a.status != 206 || len(v) != 1 || v[0] != 7 || a.header.Get("Next-Range") != "version ]7..; max=1, order=desc" {
		t.Errorf("latest: %d %v next %q", a.status, v, a.header.Get("Next-Range"))
	}
	a = f.get(t, "/apps/many/releases", "Range", "version 3..5; max=10")
	if v := versions(a); a.status != 200 || len(v) != 3 || v[0] != 3 || v[2] != 5 {
		t.Errorf("3..5: %d %v", a.status, v)
	}
	a = f.get(t, "/apps/many/releases", "Range", "version ..; max=3")
	if v := versions(a); a.status != 206 || len(v) != 3 || v[0] != 1 {
		t.Errorf("page 1: %d %v", a.status, v)
	}
	a = f.get(t, "/apps/many/releases", "Range", a.header.Get("Next-Range"))
	if v := versions(a); a.status != 206 || len(v) != 3 || v[0] != 4 {
		t.Errorf("page 2: %d %v", a.status, v)
	}
	if a := f.get(t, "/apps/many/releases", "Range", "color ..; max=1"); a.status != 416 {
		t.Errorf("bad range: %d", a.status)
	}
}

// image builds a Docker schema 2 image for os/arch.
func image(t *testing.T, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
}

func (f *fixture) ref(t *testing.T, repo string) name.Reference {
	t.Helper()
	ref, err := name.NewTag(f.host+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

var auth = remote.WithAuth(&authn.Basic{Username: "_", Password: key})

func registryCode(t *testing.T, err error) string {
	t.Helper()
	var te *transport.Error
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		t.Fatalf("err = %v, want a registry error", err)
	}
	return string(te.Errors[0].Code)
}

func TestRegistryAcceptsDockerSchema2AndRecordsTheConfigDigest(t *testing.T) {
	f := newFixture(t, Options{})
	img := image(t, "amd64")
	if err := remote.Write(f.ref(t, "shop/web"), img, auth); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	if got := f.s.Pushed("shop/web"); len(got) != 1 || got[0] != id.String() {
		t.Errorf("pushed = %v, want %s", got, id)
	}
	// Any user name works, the empty one too (the CLI's).
	req, _ := http.NewRequest("GET", f.reg.URL+"/v2/shop/web/manifests/latest", nil)
	req.Header.Set("Accept", string(types.DockerManifestSchema2))
	req.SetBasicAuth("", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != string(types.DockerManifestSchema2) {
		t.Fatalf("get: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func TestRegistryRefusesWhatHerokuRefuses(t *testing.T) {
	f := newFixture(t, Options{})
	oci := mutate.ConfigMediaType(mutate.MediaType(image(t, "amd64"), types.OCIManifestSchema1), types.OCIConfigJSON)
	ociIndex := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: image(t, "amd64")})
	dockerList := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), mutate.IndexAddendum{Add: image(t, "amd64")})

	if err := remote.Write(f.ref(t, "shop/web"), oci, auth); registryCode(t, err) != "MANIFEST_INVALID" {
		t.Errorf("OCI manifest: %v", err)
	}
	// heroku.md "Registry": an index or manifest list is 405 UNSUPPORTED.
	if err := remote.WriteIndex(f.ref(t, "shop/web"), ociIndex, auth); registryCode(t, err) != "UNSUPPORTED" {
		t.Errorf("OCI index: %v", err)
	}
	if err := remote.WriteIndex(f.ref(t, "shop/web"), dockerList, auth); registryCode(t, err) != "UNSUPPORTED" {
		t.Errorf("Docker manifest list: %v", err)
	}
	arm := image(t, "arm64")
	if err := remote.Write(f.ref(t, "shop/web"), arm, auth); registryCode(t, err) != "MANIFEST_INVALID" {
		t.Errorf("arm64: %v", err)
	}
	if err := remote.Write(f.ref(t, "shop/web"), image(t, "amd64"), remote.WithAuth(&authn.Basic{Username: "_", Password: "nope"})); err == nil {
		t.Error("a wrong key pushed")
	}
	// heroku.md "Registry": a repository the key cannot reach is 401.
	var te *transport.Error
	if err := remote.Write(f.ref(t, "nope/web"), image(t, "amd64"), auth); !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown app: %v", err)
	}
	// Only the amd64 Docker images inside the index and list were accepted.
	ociID, _ := oci.ConfigName()
	armID, _ := arm.ConfigName()
	for _, d := range f.s.Pushed("shop/web") {
		if d == ociID.String() || d == armID.String() {
			t.Errorf("refused image %s recorded as pushed", d)
		}
	}
	if got := f.s.Pushed("shop/web"); len(got) != 2 {
		t.Errorf("pushed = %v", got)
	}
	// The error body has the registry format.
	req, _ := http.NewRequest("GET", f.reg.URL+"/v2/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Errors []struct{ Code string } }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || len(body.Errors) != 1 || body.Errors[0].Code != "UNAUTHORIZED" {
		t.Errorf("unauthenticated /v2/: %d %+v", resp.StatusCode, body)
	}
}

func dockerPatch(img string) string {
	return `{"updates":[{"type":"web","docker_image":"` + img + `"}]}`
}

const dockerReleases = "application/vnd.heroku+json; version=3.docker-releases"

func TestDockerReleasesResolveOnlyPushedImagesUnderTheVariant(t *testing.T) {
	f := newFixture(t, Options{})
	img := image(t, "amd64")
	if err := remote.Write(f.ref(t, "shop/web"), img, auth); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	manifestDigest, _ := img.Digest()
	bearer := "Bearer " + key

	a := f.call(t, "PATCH", "/apps/shop/formation", v3, bearer, dockerPatch(id.String()))
	if id, _ := herokuError(t, a); a.status != 422 || id != "invalid_params" {
		t.Errorf("without the variant: %d %s", a.status, a.body)
	}
	a = f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, bearer, dockerPatch(manifestDigest.String()))
	if a.status != 422 {
		t.Errorf("manifest digest instead of image ID: %d %s", a.status, a.body)
	}
	a = f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, bearer, `{"updates":[{"type":"worker","docker_image":"`+id.String()+`"}]}`)
	if a.status != 422 {
		t.Errorf("image of another process type: %d %s", a.status, a.body)
	}
	a = f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, bearer, `{"updates":`)
	if a.status != 400 {
		t.Errorf("bad JSON: %d %s", a.status, a.body)
	}
	if n := len(f.s.Releases("shop")); n != 2 {
		t.Fatalf("releases = %d after refusals", n)
	}
	a = f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, bearer, dockerPatch(id.String()))
	if a.status != 200 {
		t.Fatalf("release: %d %s", a.status, a.body)
	}
	rels := f.s.Releases("shop")
	last := rels[len(rels)-1]
	if last.Version != 3 || !last.Current || last.Status != "succeeded" || rels[1].Current || last.Images["web"] != id.String() {
		t.Errorf("releases = %+v", rels)
	}
	if fm := f.s.Formation("shop"); len(fm) != 1 || fm[0].DockerImage != id.String() || fm[0].Quantity != 1 {
		t.Errorf("formation = %+v", fm)
	}

	f.s.CreateApp("legacy", "heroku-24")
	if err := remote.Write(f.ref(t, "legacy/web"), img, auth); err != nil {
		t.Fatal(err)
	}
	if a := f.call(t, "PATCH", "/apps/legacy/formation", dockerReleases, bearer, dockerPatch(id.String())); a.status != 422 {
		t.Errorf("docker release on heroku-24: %d %s", a.status, a.body)
	}
}

func TestReleasePhaseOutcomes(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.s.CompletePendingRelease("shop", true); err == nil {
		t.Error("completed a release that is not pending")
	}
	push := func(repo string) string {
		img := image(t, "amd64")
		if err := remote.Write(f.ref(t, repo), img, auth); err != nil {
			t.Fatal(err)
		}
		id, _ := img.ConfigName()
		return id.String()
	}
	web, rel := push("shop/web"), push("shop/release")
	body := `{"updates":[{"type":"web","docker_image":"` + web + `"},{"type":"release","docker_image":"` + rel + `"}]}`
	for _, succeed := range []bool{false, true} {
		if a := f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, "Bearer "+key, body); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		current := func() int {
			for _, r := range f.s.Releases("shop") {
				if r.Current {
					return r.Version
				}
			}
			return 0
		}
		before := current()
		rels := f.s.Releases("shop")
		last := rels[len(rels)-1]
		if last.Status != "pending" || last.Current || before != 2 {
			t.Fatalf("pending: %+v, current v%d", last, before)
		}
		if err := f.s.CompletePendingRelease("shop", succeed); err != nil {
			t.Fatal(err)
		}
		rels = f.s.Releases("shop")
		last = rels[len(rels)-1]
		if want := map[bool]int{true: last.Version, false: before}[succeed]; current() != want {
			t.Errorf("succeed=%v: current v%d, want v%d", succeed, current(), want)
		}
		if want := map[bool]string{true: "succeeded", false: "failed"}[succeed]; last.Status != want {
			t.Errorf("status = %s, want %s", last.Status, want)
		}
		if out := f.s.ReleaseOutput(last.ID); !strings.Contains(out, "Release command") {
			t.Errorf("output = %q", out)
		}
	}
}

func TestScaleIsAllOrNothing(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.SetFormation("shop", Formation{Type: "web", Quantity: 1})
	a := f.call(t, "PATCH", "/apps/shop/formation", v3, "Bearer "+key, `{"updates":[{"type":"web","quantity":3},{"type":"worker","quantity":1}]}`)
	if a.status != 404 || f.s.Formation("shop")[0].Quantity != 1 {
		t.Errorf("partial update applied: %d %+v", a.status, f.s.Formation("shop"))
	}
	a = f.call(t, "PATCH", "/apps/shop/formation", v3, "Bearer "+key, `{"updates":[{"type":"web","quantity":3,"size":"Standard-2X"}]}`)
	if fm := f.s.Formation("shop"); a.status != 200 || fm[0].Quantity != 3 || fm[0].Size != "Standard-2X" {
		t.Errorf("scale: %d %+v", a.status, fm)
	}
	if a := f.call(t, "PATCH", "/apps/shop/formation", v3, "Bearer "+key, `{"updates":[{"type":"web","quantity":-1}]}`); a.status != 422 {
		t.Errorf("negative quantity: %d", a.status)
	}
	if a := f.call(t, "PATCH", "/apps/shop/formation", v3, "Bearer "+key, `{"updates":[]}`); a.status != 422 {
		t.Errorf("no updates: %d", a.status)
	}
}

func TestFaultsApplyByCountAndPath(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.Faults().Add(Fault{PathPrefix: "/apps/shop/releases", Status: 503, Count: 2})
	f.s.Faults().FailNext(1, 500)
	if a := f.get(t, "/account/rate-limits"); a.status != 500 {
		t.Errorf("first call: %d", a.status)
	}
	if a := f.get(t, "/apps/shop"); a.status != 200 {
		t.Errorf("other path: %d", a.status)
	}
	for range 2 {
		a := f.get(t, "/apps/shop/releases")
		if id, _ := herokuError(t, a); a.status != 503 || a.header.Get("Request-Id") == "" || id == "" {
			t.Errorf("release fault: %d %s", a.status, a.body)
		}
	}
	if a := f.get(t, "/apps/shop/releases"); a.status != 200 {
		t.Errorf("after the fault: %d", a.status)
	}
	f.s.Faults().RateLimitNext(1)
	if a := f.get(t, "/apps/shop"); a.status != 429 {
		t.Errorf("rate limit fault: %d", a.status)
	}

	// A dropped connection gives no answer at all.
	f.s.Faults().DropNext(1)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", f.api.URL+"/apps/shop", nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Error("dropped request answered")
	}
	// A hung request is released when the client gives up.
	reached := make(chan struct{}, 1)
	f.s.Faults().Add(Fault{Hang: true, Count: 1, Reached: reached})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-reached; cancel() }()
	req, _ = http.NewRequestWithContext(ctx, "GET", f.api.URL+"/apps/shop", nil)
	if resp, err := client.Do(req); !errors.Is(err, context.Canceled) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("hung request: %v", err)
	}
	// Latency lets the request through afterwards.
	f.s.Faults().DelayNext(1, time.Millisecond)
	if a := f.get(t, "/apps/shop"); a.status != 200 {
		t.Errorf("delayed: %d", a.status)
	}
	var faults, writes int
	for _, c := range f.s.Calls() {
		if c.Fault {
			faults++
		}
		if c.IsWrite() {
			writes++
		}
	}
	if faults != 6 || writes != 0 {
		t.Errorf("faults = %d, writes = %d in %+v", faults, writes, f.s.Calls())
	}
}
