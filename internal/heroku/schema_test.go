package heroku

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/herokunix/herokunix/test/herokustub"
)

func (b *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	b.mu.Lock()
	b.bodies = append(b.bodies, recordedBody{method: r.Method, path: r.URL.Path, accept: r.Header.Get("Accept"), body: body})
	b.mu.Unlock()
	b.next.ServeHTTP(w, r)
}

// herokuSchema is heroku-go v5.5.0's schema.json (interagent hyper-schema).
type herokuSchema struct{ root map[string]any }

func loadHerokuSchema(t *testing.T) *herokuSchema {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/heroku/heroku-go/v5").Output()
	if err != nil {
		t.Fatalf("locate heroku-go: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	return &herokuSchema{root: root}
}

// link returns the request schema of a resource's link by title.
func (s *herokuSchema) link(t *testing.T, resource, title string) map[string]any {
	t.Helper()
	res := s.resolve("#/definitions/" + resource)
	for _, l := range res["links"].([]any) {
		l := l.(map[string]any)
		if l["title"] == title {
			return l["schema"].(map[string]any)
		}
	}
	t.Fatalf("no link %s %q", resource, title)
	return nil
}

func (s *herokuSchema) resolve(ref string) map[string]any {
	var cur any = s.root
	for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[p]
	}
	return cur.(map[string]any)
}

// validate checks v against the subset of JSON Schema that Heroku's
// schema uses for these resources.
func (s *herokuSchema) validate(sch map[string]any, v any, path string) []string {
	if ref, ok := sch["$ref"].(string); ok {
		return s.validate(s.resolve(ref), v, path)
	}
	var errs []string
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := sch[key].([]any); ok {
			matched := 0
			for _, a := range alts {
				if len(s.validate(a.(map[string]any), v, path)) == 0 {
					matched++
				}
			}
			if matched == 0 || (key == "oneOf" && matched > 1) {
				errs = append(errs, fmt.Sprintf("%s: %d alternatives of %s match", path, matched, key))
			}
		}
	}
	if types, ok := sch["type"].([]any); ok {
		if !slices.ContainsFunc(types, func(ty any) bool { return jsonType(v, ty.(string)) }) {
			return append(errs, fmt.Sprintf("%s: %v is not of type %v", path, v, types))
		}
	}
	if enum, ok := sch["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v not in %v", path, v, enum))
	}
	if pat, ok := sch["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(pat).MatchString(str) {
			errs = append(errs, fmt.Sprintf("%s: %q does not match %s", path, str, pat))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := sch["properties"].(map[string]any)
		for _, r := range asSlice(sch["required"]) {
			if _, ok := v[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: missing %s", path, r))
			}
		}
		for k, val := range v {
			if p, ok := props[k]; ok {
				errs = append(errs, s.validate(p.(map[string]any), val, path+"."+k)...)
			} else if sch["additionalProperties"] == false {
				errs = append(errs, fmt.Sprintf("%s: property %s is not allowed", path, k))
			}
		}
	case []any:
		if items, ok := sch["items"].(map[string]any); ok {
			for i, it := range v {
				errs = append(errs, s.validate(items, it, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func jsonType(v any, ty string) bool {
	switch ty {
	case "null":
		return v == nil
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == float64(int64(f))
	case "number":
		_, ok := v.(float64)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

func TestRequestBodiesMatchHerokuGoSchema(t *testing.T) {
	sch := loadHerokuSchema(t)
	clock := newFakeClock()
	stub := herokustub.New(herokustub.Options{APIKey: testKey, Now: clock.Now})
	rec := &bodyRecorder{next: stub.APIHandler()}
	api := httptest.NewServer(rec)
	defer api.Close()
	reg := httptest.NewServer(stub.RegistryHandler())
	defer reg.Close()
	c, err := New(Options{APIKey: testKey, BaseURL: api.URL, RegistryHost: strings.TrimPrefix(reg.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{stub: stub, client: c, regHost: strings.TrimPrefix(reg.URL, "http://")}
	stub.CreateApp("shop", "container")
	ctx := context.Background()
	images := map[string]string{"web": e.push(t, "shop/web"), "worker": e.push(t, "shop/worker")}
	if _, _, err := c.ReleaseImages(ctx, "shop", images); err != nil {
		t.Fatal(err)
	}
	if err := c.ScaleFormation(ctx, "shop", []Formation{{Type: "web", Quantity: 2, Size: "standard-2X"}, {Type: "worker", Quantity: 0}}); err != nil {
		t.Fatal(err)
	}

	batch := sch.link(t, "formation", "Batch Update")
	// The validator itself refuses what Heroku's schema refuses.
	var bad map[string]any
	_ = json.Unmarshal([]byte(`{"updates":[{"type":"web","quantity":"2","docker_image":"sha256:x"}]}`), &bad)
	if msgs := sch.validate(batch, bad, "bad"); len(msgs) != 2 {
		t.Fatalf("validator found %q in a body with a string quantity and an unknown property", msgs)
	}
	var patches int
	for _, b := range rec.bodies {
		if b.method != http.MethodPatch {
			if len(b.body) != 0 {
				t.Errorf("%s %s sent a body", b.method, b.path)
			}
			continue
		}
		patches++
		var v map[string]any
		if err := json.Unmarshal(b.body, &v); err != nil {
			t.Fatal(err)
		}
		if b.accept == acceptDockerReleases {
			// The schema has no docker_image (that is the docker-releases
			// variant): check it apart, the rest against the schema.
			for _, u := range v["updates"].([]any) {
				u := u.(map[string]any)
				img, _ := u["docker_image"].(string)
				if !imageIDRE.MatchString(img) || len(u) != 2 {
					t.Errorf("docker update %v", u)
				}
				delete(u, "docker_image")
			}
		}
		for _, msg := range sch.validate(batch, v, "body") {
			t.Errorf("%s %s (%s): %s", b.method, b.path, b.accept, msg)
		}
	}
	if patches != 2 {
		t.Errorf("PATCHes = %d, want 2", patches)
	}
}

func TestStandInAnswersMatchHerokuGoSchema(t *testing.T) {
	sch := loadHerokuSchema(t)
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	images := map[string]string{"web": e.push(t, "shop/web"), "release": e.push(t, "shop/release")}
	rel, _, err := e.client.ReleaseImages(context.Background(), "shop", images)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.stub.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, def string
		list      bool
	}{
		{"/apps/shop", "app", false},
		{"/apps/shop/releases", "release", true},
		{"/apps/shop/releases/" + rel.ID, "release", false},
		{"/apps/shop/formation", "formation", true},
		{"/apps/shop/formation/web", "formation", false},
		{"/account/rate-limits", "rate-limit", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.api.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Accept", acceptV3)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("%s: %s, %v", tc.path, resp.Status, err)
		}
		def := sch.resolve("#/definitions/" + tc.def)
		items := []any{v}
		if tc.list {
			items = v.([]any)
		}
		for i, it := range items {
			obj := map[string]any{"type": []any{"object"}, "properties": def["properties"]}
			for _, msg := range sch.validate(obj, it, fmt.Sprintf("%s[%d]", tc.path, i)) {
				t.Error(msg)
			}
		}
	}
}
