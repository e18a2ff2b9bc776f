package heroku

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/herokunix/herokunix/test/herokustub"
)

// cliStep is one request of `heroku container:release web worker` and the
// answer Heroku documents for it.
type cliStep struct {
	name     string
	registry bool
	method   string
	path     string
	header   map[string]string
	basic    bool // Basic auth with an empty user and the key
	body     string
	status   int
	check    func(t *testing.T, body []byte, h http.Header)
}

// TestHerokuCLIContainerReleaseSequence replays the requests the Heroku
// CLI's container:release makes, in order, and checks the stand-in's
// answers; then checks ReleaseImages makes the same API requests.
func TestHerokuCLIContainerReleaseSequence(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	web, worker := e.push(t, "shop/web"), e.push(t, "shop/worker")
	e.stub.ResetCalls()

	var oldID, newID string
	v3 := map[string]string{"Accept": acceptV3}
	latest := map[string]string{"Accept": acceptV3, "Range": "version ..; max=1, order=desc"}
	steps := []cliStep{
		{name: "app info", method: "GET", path: "/apps/shop", header: v3, status: 200,
			check: func(t *testing.T, b []byte, _ http.Header) {
				var a struct {
					Stack      struct{ Name string } `json:"stack"`
					BuildStack struct{ Name string } `json:"build_stack"`
				}
				mustJSON(t, b, &a)
				if a.Stack.Name != "container" || a.BuildStack.Name != "container" {
					t.Errorf("stacks = %+v", a)
				}
			}},
		{name: "registry manifest of web", registry: true, method: "GET", path: "/v2/shop/web/manifests/latest", basic: true,
			header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, status: 200,
			check: func(t *testing.T, b []byte, h http.Header) {
				var m struct {
					MediaType string                  `json:"mediaType"`
					Config    struct{ Digest string } `json:"config"`
				}
				mustJSON(t, b, &m)
				if m.Config.Digest != web || h.Get("Content-Type") != "application/vnd.docker.distribution.manifest.v2+json" {
					t.Errorf("manifest = %+v, content type %q", m, h.Get("Content-Type"))
				}
			}},
		{name: "registry manifest of worker", registry: true, method: "GET", path: "/v2/shop/worker/manifests/latest", basic: true,
			header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, status: 200,
			check: func(t *testing.T, b []byte, _ http.Header) {
				var m struct{ Config struct{ Digest string } }
				mustJSON(t, b, &m)
				if m.Config.Digest != worker {
					t.Errorf("worker config = %s", m.Config.Digest)
				}
			}},
		{name: "latest release before", method: "GET", path: "/apps/shop/releases", header: latest, status: 206,
			check: func(t *testing.T, b []byte, h http.Header) {
				rels := releasesJSON(t, b)
				if len(rels) != 1 || rels[0].Version != 2 || h.Get("Next-Range") == "" {
					t.Errorf("releases = %+v, Next-Range %q", rels, h.Get("Next-Range"))
				}
				oldID = rels[0].ID
			}},
		{name: "formation PATCH with docker-releases", method: "PATCH", path: "/apps/shop/formation",
			header: map[string]string{"Accept": acceptDockerReleases, "Content-Type": "application/json"},
			body:   `{"updates":[{"type":"web","docker_image":"` + web + `"},{"type":"worker","docker_image":"` + worker + `"}]}`,
			status: 200},
		{name: "latest release after", method: "GET", path: "/apps/shop/releases", header: latest, status: 206,
			check: func(t *testing.T, b []byte, _ http.Header) {
				rels := releasesJSON(t, b)
				if len(rels) != 1 || rels[0].Version != 3 || rels[0].ID == oldID {
					t.Errorf("releases = %+v", rels)
				}
				newID = rels[0].ID
			}},
		{name: "release info", method: "GET", header: v3, status: 200,
			check: func(t *testing.T, b []byte, _ http.Header) {
				var r releaseJSON
				mustJSON(t, b, &r)
				if r.ID != newID || r.Status != "succeeded" || !r.Current {
					t.Errorf("release = %+v", r)
				}
			}},
	}
	for _, st := range steps {
		path := st.path
		if st.name == "release info" {
			path = "/apps/shop/releases/" + newID
		}
		base := e.api.URL
		if st.registry {
			base = e.reg.URL
		}
		var body io.Reader
		if st.body != "" {
			body = strings.NewReader(st.body)
		}
		req, _ := http.NewRequest(st.method, base+path, body)
		for k, v := range st.header {
			req.Header.Set(k, v)
		}
		if st.basic {
			req.SetBasicAuth("", testKey)
		} else {
			req.Header.Set("Authorization", "Bearer "+testKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.status {
			t.Fatalf("%s: %d %s, want %d", st.name, resp.StatusCode, b, st.status)
		}
		if !st.registry && (resp.Header.Get("Request-Id") == "" || resp.Header.Get("RateLimit-Remaining") == "") {
			t.Errorf("%s: missing Request-Id or RateLimit-Remaining", st.name)
		}
		if st.check != nil {
			st.check(t, b, resp.Header)
		}
	}
	cliCalls := e.stub.Calls()
	for _, c := range cliCalls {
		if c.Handler == "registry" && (c.Auth != "basic" || c.BasicUser != "") {
			t.Errorf("registry call %+v", c)
		}
	}

	// ReleaseImages makes the API part of that sequence, request for request.
	// A config change comes first (a release of its own, v4); the images are
	// those the CLI just released, and Heroku ignores a release of the
	// images it runs, so nothing new is released.
	req, _ := http.NewRequest(http.MethodPatch, e.api.URL+"/apps/shop/config-vars", strings.NewReader(`{"FOO":"bar"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Accept", "application/vnd.heroku+json; version=3")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("config:set: %v %v", resp, err)
	}
	e.stub.ResetCalls()
	rel, outcome, err := e.client.ReleaseImages(context.Background(), "shop", map[string]string{"web": web, "worker": worker})
	if err != nil || outcome != NotReleased || rel.Version != 4 {
		t.Fatalf("ReleaseImages = %+v, %v, %v", rel, outcome, err)
	}
	if _, err := e.client.Release(context.Background(), "shop", rel.ID); err != nil {
		t.Fatal(err)
	}
	var wantAPI []herokustub.Call
	for _, c := range cliCalls[3:] { // from "latest release before" on
		wantAPI = append(wantAPI, herokustub.Call{Method: c.Method, Accept: c.Accept, Range: c.Range, Path: pathShape(c.Path)})
	}
	got := e.apiCalls()
	if len(got) != len(wantAPI) {
		t.Fatalf("client calls = %+v, want %+v", got, wantAPI)
	}
	for i, c := range got {
		g := herokustub.Call{Method: c.Method, Accept: c.Accept, Range: c.Range, Path: pathShape(c.Path)}
		if g != wantAPI[i] {
			t.Errorf("call %d = %+v, want %+v", i, g, wantAPI[i])
		}
	}
}

// pathShape hides release ids.
func pathShape(p string) string {
	if i := strings.Index(p, "/releases/"); i >= 0 {
		return p[:i] + "/releases/{id}"
	}
	return p
}

type releaseJSON struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	Status  string `json:"status"`
	Current bool   `json:"current"`
}

func releasesJSON(t *testing.T, b []byte) []releaseJSON {
	t.Helper()
	var r []releaseJSON
	mustJSON(t, b, &r)
	return r
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
